"""The ledger engine: applies a batch of transfers to accounts held in memory.

The adapter loads everything a batch can touch (accounts locked in id order,
the batch's ids if they already exist or failed, the pending transfers it
names), hands it to `LedgerBatch`, and writes back what the batch produced in
the same database transaction. The engine itself does no I/O, so the rules
of money movement live in one place and are unit-tested without a database.

Semantics follow TigerBeetle:

* transfers apply in request order; each gets its own result;
* an id is forever: an identical retry is EXISTS, a different one
  EXISTS_WITH_DIFFERENT_FIELDS, and an id that failed for a reason that could
  change (funds, account state, ...) fails again with ID_ALREADY_FAILED;
* `linked` transfers form a chain that succeeds or fails as a whole;
* pending transfers (holds) are posted (fully or partly) or voided once, and
  expire at their timeout, which releases the funds;
* every transfer gets a timestamp later than any earlier entry of its
  accounts, which keeps statements and point-in-time balances in order.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.common.money import INT64_MAX, is_currency

from .errors import TRANSIENT_REASONS, Reason
from .model import (
    Account,
    AccountStatus,
    Direction,
    Entry,
    NewTransfer,
    PendingState,
    Transfer,
    TransferKind,
)

MAX_BATCH_SIZE = 8190
# transfers.timeout_seconds is a PostgreSQL integer; the API's field is a uint32.
MAX_TIMEOUT_SECONDS = 2**31 - 1
_TICK = timedelta(microseconds=1)
# Expiry transfers get ids derived from the hold, so expiring twice is impossible
# (the database also allows one resolution per pending id).
_EXPIRY_NAMESPACE = uuid.UUID("6f1c3d52-2b57-4a0c-9d1e-5b8f0e2f7a11")


class Outcome(enum.StrEnum):
    CREATED = "CREATED"
    EXISTS = "EXISTS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: uuid.UUID
    outcome: Outcome
    reason: Reason | None = None
    transfer: Transfer | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.FAILED


@dataclass(frozen=True, slots=True)
class FailedTransfer:
    id: uuid.UUID
    reason: Reason
    request_hash: bytes
    failed_at: datetime


@dataclass(slots=True)
class LedgerView:
    """The slice of the ledger a batch may read, loaded under the accounts' row locks."""

    accounts: dict[uuid.UUID, Account]
    # Existing transfers among the batch's ids and the pending ids it names,
    # with pending_state filled in for PENDING ones.
    transfers: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    # Ids that failed before, with their reason.
    failed: dict[uuid.UUID, Reason] = field(default_factory=dict)


@dataclass(slots=True)
class BatchChanges:
    """What a batch wrote, for the adapter to persist in the same transaction."""

    created: list[Transfer] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    failed: list[FailedTransfer] = field(default_factory=list)
    # Holds that stopped being pending (posted, voided, expired).
    resolved_pending: list[uuid.UUID] = field(default_factory=list)
    touched_accounts: set[uuid.UUID] = field(default_factory=set)


def request_hash(t: NewTransfer) -> bytes:
    """Fingerprint of everything a client said, to tell a retry from a different request."""
    parts = [
        t.kind.value,
        str(t.debit_account_id or ""),
        str(t.credit_account_id or ""),
        "" if t.amount is None else str(t.amount),
        t.currency or "",
        str(t.pending_id or ""),
        str(t.timeout_seconds),
        str(t.code),
        *(f"{k}={v}" for k, v in sorted(t.metadata)),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def validate_shape(t: NewTransfer) -> Reason | None:
    """Errors that depend on the request alone: the same request always fails the same way."""
    if t.id.int == 0:
        return Reason.INVALID_ID
    if t.amount is not None and not 0 < t.amount <= INT64_MAX:
        return Reason.INVALID_AMOUNT
    if t.currency is not None and not is_currency(t.currency):
        return Reason.INVALID_CURRENCY
    if t.timeout_seconds and t.kind is not TransferKind.PENDING:
        return Reason.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if not 0 <= t.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        return Reason.INVALID_ARGUMENT
    if t.debit_account_id is not None and t.debit_account_id == t.credit_account_id:
        return Reason.ACCOUNTS_MUST_BE_DIFFERENT
    if t.kind is TransferKind.EXPIRE_PENDING:
        return Reason.INVALID_ARGUMENT  # the ledger alone expires holds
    if t.kind.resolves_pending:
        if t.pending_id is None or t.pending_id.int == 0 or t.pending_id == t.id:
            return Reason.INVALID_ID
        return None
    if t.pending_id is not None:
        return Reason.INVALID_ARGUMENT
    if t.debit_account_id is None or t.credit_account_id is None:
        return Reason.INVALID_ID
    if t.amount is None:
        return Reason.INVALID_AMOUNT
    if t.currency is None:
        return Reason.INVALID_CURRENCY
    return None


@dataclass(slots=True)
class _Savepoint:
    """Enough to undo a failed linked chain."""

    counters: dict[uuid.UUID, tuple[int, int, int, int, datetime | None, datetime | None]]
    created: int
    entries: int
    failed: int
    resolved: int
    transfers_added: list[uuid.UUID] = field(default_factory=list)
    pending_changed: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    touched: set[uuid.UUID] = field(default_factory=set)


class LedgerBatch:
    """Applies transfers to a `LedgerView`; collect the writes from `changes`."""

    def __init__(self, view: LedgerView, now: datetime) -> None:
        self.view = view
        self.changes = BatchChanges()
        newest = max(
            (a.last_entry_at for a in view.accounts.values() if a.last_entry_at is not None),
            default=None,
        )
        self._clock = now if newest is None or newest < now else newest + _TICK
        self._savepoint: _Savepoint | None = None

    # -- public -----------------------------------------------------------------

    def apply(self, requests: Sequence[NewTransfer]) -> list[TransferResult]:
        """One result per request, in order; linked chains are all-or-nothing."""
        if len(requests) > MAX_BATCH_SIZE:
            raise ValueError(f"at most {MAX_BATCH_SIZE} transfers per batch")
        return self.apply_many([requests])[0]

    def apply_many(
        self, submissions: Sequence[Sequence[NewTransfer]]
    ) -> list[list[TransferResult]]:
        """Several clients' submissions in one batch (group commit).

        Each submission keeps its own semantics: chains never span two
        submissions, and a submission ending in a linked transfer fails its
        open chain alone. Later submissions see what earlier ones did, exactly
        as if they had arrived one after the other.
        """
        self.expire_due()
        return [self._apply_submission(requests) for requests in submissions]

    def _apply_submission(self, requests: Sequence[NewTransfer]) -> list[TransferResult]:
        results: list[TransferResult] = []
        chain: list[NewTransfer] = []
        for request in requests:
            chain.append(request)
            if not request.linked:
                results.extend(self._apply_chain(chain))
                chain = []
        if chain:  # the last transfer of the submission still said "linked"
            results.extend(self._fail_open_chain(chain))
        return results

    def expire_due(self) -> list[Transfer]:
        """Release every loaded hold whose timeout has passed."""
        expired = []
        for pending in list(self.view.transfers.values()):
            if self._is_due(pending):
                expired.append(self._expire(pending))
        return expired

    # -- chains -----------------------------------------------------------------

    def _apply_chain(self, chain: list[NewTransfer]) -> list[TransferResult]:
        if len(chain) == 1:
            return [self._apply_one(chain[0])]
        self._savepoint = _Savepoint(
            counters={},
            created=len(self.changes.created),
            entries=len(self.changes.entries),
            failed=len(self.changes.failed),
            resolved=len(self.changes.resolved_pending),
        )
        results: list[TransferResult] = []
        for request in chain:
            result = self._apply_one(request)
            results.append(result)
            if not result.ok:
                break
        savepoint, self._savepoint = self._savepoint, None
        if all(r.ok for r in results):
            return results
        failure = results[-1]
        failed_at = len(results) - 1
        self._rollback(savepoint)
        if failure.reason in TRANSIENT_REASONS:
            self._record_failure(chain[failed_at], failure.reason)
        out: list[TransferResult] = []
        for i, request in enumerate(chain):
            if i == failed_at:
                out.append(failure)
            elif (
                i < failed_at
                and results[i].outcome is Outcome.EXISTS
                # Not a repeat of an id this chain created: that one was rolled back.
                and request.id in self.view.transfers
            ):
                out.append(results[i])  # it was there before this chain and still is
            else:
                out.append(_failed(request, Reason.LINKED_EVENT_FAILED))
        return out

    def _fail_open_chain(self, chain: list[NewTransfer]) -> list[TransferResult]:
        *rest, last = chain
        return [_failed(r, Reason.LINKED_EVENT_FAILED) for r in rest] + [
            _failed(last, Reason.LINKED_EVENT_CHAIN_OPEN)
        ]

    def _rollback(self, sp: _Savepoint) -> None:
        for account_id, (dp, cp, dpend, cpend, last, updated) in sp.counters.items():
            account = self.view.accounts[account_id]
            account.debits_posted, account.credits_posted = dp, cp
            account.debits_pending, account.credits_pending = dpend, cpend
            account.last_entry_at, account.updated_at = last, updated
        del self.changes.created[sp.created :]
        del self.changes.entries[sp.entries :]
        del self.changes.failed[sp.failed :]
        del self.changes.resolved_pending[sp.resolved :]
        # Holds first: a hold the chain both created and resolved must then
        # disappear with the rest of the chain, not come back as pending.
        self.view.transfers.update(sp.pending_changed)
        for transfer_id in sp.transfers_added:
            self.view.transfers.pop(transfer_id, None)
        self.changes.touched_accounts -= sp.touched

    # -- one transfer -----------------------------------------------------------

    def _apply_one(self, request: NewTransfer) -> TransferResult:
        shape_error = validate_shape(request)
        if shape_error is not None:
            return _failed(request, shape_error)
        fingerprint = request_hash(request)
        existing = self.view.transfers.get(request.id)
        if existing is not None:
            if existing.request_hash == fingerprint:
                return TransferResult(request.id, Outcome.EXISTS, transfer=existing)
            return _failed(request, Reason.EXISTS_WITH_DIFFERENT_FIELDS)
        if request.id in self.view.failed:
            return _failed(request, Reason.ID_ALREADY_FAILED)

        if request.kind.resolves_pending:
            outcome = self._resolve(request, fingerprint)
        else:
            outcome = self._move(request, fingerprint)
        if isinstance(outcome, Reason):
            if self._savepoint is None and outcome in TRANSIENT_REASONS:
                self._record_failure(request, outcome)
            return _failed(request, outcome)
        return TransferResult(request.id, Outcome.CREATED, transfer=outcome)

    def _move(self, request: NewTransfer, fingerprint: bytes) -> Transfer | Reason:
        assert request.debit_account_id and request.credit_account_id  # validate_shape
        assert request.amount is not None and request.currency is not None
        debit = self.view.accounts.get(request.debit_account_id)
        credit = self.view.accounts.get(request.credit_account_id)
        if debit is None:
            return Reason.DEBIT_ACCOUNT_NOT_FOUND
        if credit is None:
            return Reason.CREDIT_ACCOUNT_NOT_FOUND
        amount = request.amount
        refusal = (
            _currency_refusal(request.currency, debit, credit)
            or _status_refusal(debit, credit)
            or _limit_refusal(debit, credit, amount)
        )
        if refusal is not None:
            return refusal

        ts = self._next_timestamp()
        pending = request.kind is TransferKind.PENDING
        transfer = Transfer(
            id=request.id,
            kind=request.kind,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency=request.currency,
            created_at=ts,
            timeout_seconds=request.timeout_seconds,
            expires_at=(
                ts + timedelta(seconds=request.timeout_seconds)
                if pending and request.timeout_seconds
                else None
            ),
            code=request.code,
            metadata=dict(request.metadata),
            request_hash=fingerprint,
            pending_state=PendingState.PENDING if pending else None,
        )
        if pending:
            self._book(transfer, debit, credit, posted=0, pending_change=amount)
        else:
            self._book(transfer, debit, credit, posted=amount, pending_change=0)
        return transfer

    def _resolve(self, request: NewTransfer, fingerprint: bytes) -> Transfer | Reason:
        assert request.pending_id is not None  # validate_shape
        pending = self.view.transfers.get(request.pending_id)
        if pending is None:
            return Reason.PENDING_TRANSFER_NOT_FOUND
        if pending.kind is not TransferKind.PENDING:
            return Reason.PENDING_TRANSFER_NOT_PENDING
        if (
            request.debit_account_id is not None
            and request.debit_account_id != pending.debit_account_id
        ) or (
            request.credit_account_id is not None
            and request.credit_account_id != pending.credit_account_id
        ):
            return Reason.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
        if request.currency is not None and request.currency != pending.currency:
            return Reason.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY
        if self._is_due(pending):
            pending = self._expire(pending)
        if pending.pending_state is not PendingState.PENDING:
            return {
                PendingState.POSTED: Reason.PENDING_TRANSFER_ALREADY_POSTED,
                PendingState.VOIDED: Reason.PENDING_TRANSFER_ALREADY_VOIDED,
                PendingState.EXPIRED: Reason.PENDING_TRANSFER_EXPIRED,
            }[pending.pending_state or PendingState.EXPIRED]

        debit = self.view.accounts[pending.debit_account_id]
        credit = self.view.accounts[pending.credit_account_id]
        if request.kind is TransferKind.POST_PENDING:
            amount = pending.amount if request.amount is None else request.amount
            if amount > pending.amount:
                return Reason.EXCEEDS_PENDING_AMOUNT
            refusal = _status_refusal(debit, credit)
            if refusal is not None:
                return refusal
            posted = amount
        else:
            # Voiding releases money without moving any: allowed on frozen accounts.
            amount = pending.amount
            posted = 0
        return self._settle(pending, request.id, request.kind, amount, posted, request, fingerprint)

    def _expire(self, pending: Transfer) -> Transfer:
        """Release an overdue hold; returns the pending transfer in its new state."""
        self._settle(
            pending,
            uuid.uuid5(_EXPIRY_NAMESPACE, str(pending.id)),
            TransferKind.EXPIRE_PENDING,
            pending.amount,
            0,
            None,
            b"",
        )
        return self.view.transfers[pending.id]

    def _settle(
        self,
        pending: Transfer,
        transfer_id: uuid.UUID,
        kind: TransferKind,
        amount: int,
        posted: int,
        request: NewTransfer | None,
        fingerprint: bytes,
    ) -> Transfer:
        debit = self.view.accounts[pending.debit_account_id]
        credit = self.view.accounts[pending.credit_account_id]
        ts = self._next_timestamp()
        transfer = Transfer(
            id=transfer_id,
            kind=kind,
            debit_account_id=pending.debit_account_id,
            credit_account_id=pending.credit_account_id,
            amount=amount,
            currency=pending.currency,
            created_at=ts,
            pending_id=pending.id,
            code=request.code if request else pending.code,
            metadata=dict(request.metadata) if request else {},
            request_hash=fingerprint,
        )
        self._book(transfer, debit, credit, posted=posted, pending_change=-pending.amount)
        if self._savepoint is not None and pending.id not in self._savepoint.pending_changed:
            self._savepoint.pending_changed[pending.id] = pending
        self.view.transfers[pending.id] = replace(pending, pending_state=PendingState.after(kind))
        self.changes.resolved_pending.append(pending.id)
        return transfer

    # -- bookkeeping --------------------------------------------------------------

    def _book(
        self,
        transfer: Transfer,
        debit: Account,
        credit: Account,
        *,
        posted: int,
        pending_change: int,
    ) -> None:
        """Apply a transfer to both accounts and write its two entries."""
        for account in (debit, credit):
            self._remember(account)
        debit.debits_posted += posted
        debit.debits_pending += pending_change
        credit.credits_posted += posted
        credit.credits_pending += pending_change
        for account, direction in ((debit, Direction.DEBIT), (credit, Direction.CREDIT)):
            account.last_entry_at = account.updated_at = transfer.created_at
            self.changes.entries.append(
                Entry(
                    transfer_id=transfer.id,
                    account_id=account.id,
                    kind=transfer.kind,
                    direction=direction,
                    posted_delta=posted,
                    pending_delta=pending_change,
                    balances_after=account.balances,
                    created_at=transfer.created_at,
                    code=transfer.code,
                    metadata=transfer.metadata,
                )
            )
            self.changes.touched_accounts.add(account.id)
        self.changes.created.append(transfer)
        self.view.transfers[transfer.id] = transfer
        if self._savepoint is not None:
            self._savepoint.transfers_added.append(transfer.id)

    def _remember(self, account: Account) -> None:
        sp = self._savepoint
        if sp is None or account.id in sp.counters:
            return
        sp.counters[account.id] = (
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
            account.last_entry_at,
            account.updated_at,
        )
        if account.id not in self.changes.touched_accounts:
            sp.touched.add(account.id)

    def _record_failure(self, request: NewTransfer, reason: Reason) -> None:
        self.view.failed[request.id] = reason
        self.changes.failed.append(
            FailedTransfer(request.id, reason, request_hash(request), self._clock)
        )

    def _next_timestamp(self) -> datetime:
        ts = self._clock
        self._clock += _TICK
        return ts

    def _is_due(self, transfer: Transfer) -> bool:
        return (
            transfer.kind is TransferKind.PENDING
            # Both accounts must be locked and loaded for the engine to touch them.
            and transfer.debit_account_id in self.view.accounts
            and transfer.credit_account_id in self.view.accounts
            and transfer.pending_state is PendingState.PENDING
            and transfer.expires_at is not None
            and transfer.expires_at <= self._clock
        )


def _failed(request: NewTransfer, reason: Reason) -> TransferResult:
    return TransferResult(request.id, Outcome.FAILED, reason=reason)


def _currency_refusal(currency: str, debit: Account, credit: Account) -> Reason | None:
    if debit.currency != currency or credit.currency != currency:
        return Reason.CURRENCY_MISMATCH
    return None


def _status_refusal(*accounts: Account) -> Reason | None:
    statuses = {a.status for a in accounts}
    if AccountStatus.CLOSED in statuses:
        return Reason.ACCOUNT_CLOSED
    if AccountStatus.FROZEN in statuses:
        return Reason.ACCOUNT_FROZEN
    return None


def _limit_refusal(debit: Account, credit: Account, amount: int) -> Reason | None:
    if debit.would_overflow(amount) or credit.would_overflow(amount):
        return Reason.BALANCE_OVERFLOW
    headroom = debit.debit_headroom()
    if headroom is not None and amount > headroom:
        return Reason.INSUFFICIENT_FUNDS
    headroom = credit.credit_headroom()
    if headroom is not None and amount > headroom:
        return Reason.EXCEEDS_DEBITS
    return None


def account_ids_of(requests: Iterable[NewTransfer]) -> set[uuid.UUID]:
    """Accounts a batch names directly (pending transfers add theirs when loaded)."""
    ids: set[uuid.UUID] = set()
    for r in requests:
        if r.debit_account_id is not None:
            ids.add(r.debit_account_id)
        if r.credit_account_id is not None:
            ids.add(r.credit_account_id)
    return ids
