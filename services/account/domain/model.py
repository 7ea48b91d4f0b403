"""Accounts and transfers of the double-entry ledger, as plain values.

The model follows TigerBeetle: an account keeps four counters
(debits/credits x posted/pending) that only transfers change, and balance
limits are flags on the account. A transfer always moves `amount` from its
debit account to its credit account, so every transfer's debits equal its
credits by construction; the engine (`engine.py`) applies transfers to these
values and PostgreSQL checks the same invariants again.

Customer and internal accounts are credit-normal (the bank owes that money);
settlement accounts are debit-normal (money the bank holds elsewhere). The
normal side only changes how balances are *shown*; the counters are the truth.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.common.audit.events import Origin
from services.common.money import INT64_MAX, is_currency

from .errors import AccountStateError, InvalidRequest, Reason


class AccountType(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    SETTLEMENT = "SETTLEMENT"
    INTERNAL = "INTERNAL"

    @property
    def debit_normal(self) -> bool:
        return self is AccountType.SETTLEMENT


class AccountStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Limits:
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    overdraft_limit: int = 0

    @classmethod
    def default_for(cls, account_type: AccountType) -> Limits:
        # Safe by default: a customer account cannot go below zero unless an
        # overdraft was agreed explicitly.
        if account_type is AccountType.CUSTOMER:
            return cls(debits_must_not_exceed_credits=True)
        return cls()


@dataclass(frozen=True, slots=True)
class Balances:
    currency: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    debit_normal: bool = False

    @property
    def posted(self) -> int:
        """Settled balance, signed in the account's normal direction."""
        net = self.credits_posted - self.debits_posted
        return -net if self.debit_normal else net

    @property
    def available(self) -> int:
        """What can still leave the account: posted minus outgoing holds."""
        if self.debit_normal:
            return self.posted - self.credits_pending
        return self.posted - self.debits_pending

    @property
    def is_zero(self) -> bool:
        return not (
            self.debits_posted - self.credits_posted or self.debits_pending or self.credits_pending
        )


@dataclass(slots=True)
class Account:
    """An account with its counters. Mutable only inside the engine, under a row lock."""

    id: uuid.UUID
    currency: str
    type: AccountType
    customer_id: str = ""
    status: AccountStatus = AccountStatus.ACTIVE
    limits: Limits = field(default_factory=Limits)
    metadata: dict[str, str] = field(default_factory=dict)
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Timestamp of the newest entry; the next one must be later (statements
    # and point-in-time balances rely on per-account time order).
    last_entry_at: datetime | None = None

    @property
    def balances(self) -> Balances:
        return Balances(
            currency=self.currency,
            debits_posted=self.debits_posted,
            credits_posted=self.credits_posted,
            debits_pending=self.debits_pending,
            credits_pending=self.credits_pending,
            debit_normal=self.type.debit_normal,
        )

    def debit_headroom(self) -> int | None:
        """How much more may be debited (posted or pending); None when unlimited."""
        if not self.limits.debits_must_not_exceed_credits:
            return None
        used = self.debits_posted + self.debits_pending
        return self.credits_posted + self.limits.overdraft_limit - used

    def credit_headroom(self) -> int | None:
        """How much more may be credited (posted or pending); None when unlimited."""
        if not self.limits.credits_must_not_exceed_debits:
            return None
        return self.debits_posted - (self.credits_posted + self.credits_pending)

    # -- lifecycle ------------------------------------------------------------------

    def freeze(self) -> None:
        self._refuse_if_closed()
        self.status = AccountStatus.FROZEN

    def unfreeze(self) -> None:
        self._refuse_if_closed()
        self.status = AccountStatus.ACTIVE

    def close(self) -> None:
        if self.status is AccountStatus.CLOSED:
            return
        if not self.balances.is_zero:
            raise AccountStateError(
                f"account {self.id} still has a balance or holds; move or release them first",
                reason=Reason.ACCOUNT_BALANCE_NOT_ZERO,
            )
        self.status = AccountStatus.CLOSED

    def _refuse_if_closed(self) -> None:
        if self.status is AccountStatus.CLOSED:
            raise AccountStateError(f"account {self.id} is closed", reason=Reason.ACCOUNT_CLOSED)

    def same_definition_as(self, other: Account) -> bool:
        """Whether re-opening `other` with this id is the same request (idempotent open)."""
        return (
            self.currency == other.currency
            and self.type is other.type
            and self.customer_id == other.customer_id
            and self.limits == other.limits
            and self.metadata == other.metadata
        )

    def would_overflow(self, amount: int) -> bool:
        # PostgreSQL bigint is the ceiling; sums of counters must fit too.
        return (
            max(
                self.debits_posted + self.debits_pending, self.credits_posted + self.credits_pending
            )
            > INT64_MAX - amount
        )


@dataclass(frozen=True, slots=True)
class Viewer:
    """On whose behalf an account is read or opened.

    A customer sees only accounts they own; anything else looks exactly like an
    account that does not exist, so ids cannot be probed. Staff and services
    (`customer_id=None`) see every account; what they may call at all is the
    mesh policy's business.
    """

    customer_id: str | None = None

    def may_see(self, account: Account) -> bool:
        return self.customer_id is None or account.customer_id == self.customer_id


EVERYONE = Viewer()


class TransferKind(enum.StrEnum):
    SINGLE_PHASE = "SINGLE_PHASE"
    PENDING = "PENDING"
    POST_PENDING = "POST_PENDING"
    VOID_PENDING = "VOID_PENDING"
    EXPIRE_PENDING = "EXPIRE_PENDING"

    @property
    def resolves_pending(self) -> bool:
        return self in (
            TransferKind.POST_PENDING,
            TransferKind.VOID_PENDING,
            TransferKind.EXPIRE_PENDING,
        )


class PendingState(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"

    @classmethod
    def after(cls, resolution: TransferKind) -> PendingState:
        return {
            TransferKind.POST_PENDING: cls.POSTED,
            TransferKind.VOID_PENDING: cls.VOIDED,
            TransferKind.EXPIRE_PENDING: cls.EXPIRED,
        }[resolution]


@dataclass(frozen=True, slots=True)
class NewTransfer:
    """What a client asks for. Optional fields are None when the client left them out."""

    id: uuid.UUID
    kind: TransferKind
    debit_account_id: uuid.UUID | None
    credit_account_id: uuid.UUID | None
    amount: int | None
    currency: str | None
    pending_id: uuid.UUID | None = None
    timeout_seconds: int = 0
    code: int = 0
    metadata: tuple[tuple[str, str], ...] = ()
    linked: bool = False
    # Who asked, for the audit log: not part of the request (a retry by
    # someone else is the same transfer), hence left out of equality.
    requested_by: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer the ledger accepted. Immutable, like its row.

    For POST_PENDING, `amount` is what was posted; for VOID_PENDING and
    EXPIRE_PENDING it is the held amount that was released.
    """

    id: uuid.UUID
    kind: TransferKind
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    currency: str
    created_at: datetime
    pending_id: uuid.UUID | None = None
    timeout_seconds: int = 0
    expires_at: datetime | None = None
    code: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    # Fingerprint of the request that created it: an idempotent retry must match.
    request_hash: bytes = b""
    # PENDING transfers only; the repository fills it in on reads.
    pending_state: PendingState | None = None


class Direction(enum.StrEnum):
    DEBIT = "D"
    CREDIT = "C"


@dataclass(frozen=True, slots=True)
class Entry:
    """The effect of one transfer on one account: counter deltas and the counters after."""

    transfer_id: uuid.UUID
    account_id: uuid.UUID
    kind: TransferKind
    direction: Direction
    posted_delta: int
    pending_delta: int
    balances_after: Balances
    created_at: datetime
    code: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    sequence: int = 0


def open_account(
    *,
    account_id: uuid.UUID | None,
    customer_id: str,
    currency: str,
    account_type: AccountType,
    limits: Limits | None,
    metadata: dict[str, str],
    now: datetime,
) -> Account:
    """A new, empty account, or InvalidRequest saying which field is wrong."""
    if account_id is not None and account_id.int == 0:
        raise InvalidRequest(
            "account_id must not be the nil UUID", reason=Reason.INVALID_ID, field="account_id"
        )
    if not is_currency(currency):
        raise InvalidRequest(
            f"{currency!r} is not an ISO 4217 currency code (e.g. 'EUR')",
            reason=Reason.INVALID_CURRENCY,
            field="currency_code",
        )
    if account_type is AccountType.CUSTOMER and not customer_id:
        raise InvalidRequest("a customer account needs a customer_id", field="customer_id")
    limits = limits or Limits.default_for(account_type)
    if limits.debits_must_not_exceed_credits and limits.credits_must_not_exceed_debits:
        raise InvalidRequest(
            "set at most one of debits_must_not_exceed_credits and credits_must_not_exceed_debits",
            reason=Reason.CONFLICTING_LIMIT_FLAGS,
            field="limits",
        )
    if limits.overdraft_limit < 0 or (
        limits.overdraft_limit and not limits.debits_must_not_exceed_credits
    ):
        raise InvalidRequest(
            "overdraft_limit_minor_units must be >= 0 and needs debits_must_not_exceed_credits",
            field="limits.overdraft_limit_minor_units",
        )
    if limits.overdraft_limit > INT64_MAX:
        raise InvalidRequest(
            "overdraft limit too large", field="limits.overdraft_limit_minor_units"
        )
    return Account(
        id=account_id or uuid.uuid4(),
        currency=currency,
        type=account_type,
        customer_id=customer_id,
        limits=limits,
        metadata=dict(metadata),
        created_at=now,
        updated_at=now,
    )
