"""A plain in-memory model of what the ledger promises, to compare the real one against.

It is written from the ledger's documented rules, not from its code, and
favours the obvious over the fast: a failed linked chain is undone by
restoring a deep copy, ids are dictionary keys, and every check is an `if`
in the order the rules are listed below. It knows nothing of PostgreSQL,
locks or timestamps beyond "is this hold overdue at this moment".

Results are plain strings: "CREATED", "EXISTS", or the failure reason's name
("INSUFFICIENT_FUNDS", ...), the words a client sees.

The rules, in the order a transfer is checked:

1. Shape (the request alone decides): nil id; amount outside 1..2^63-1;
   unknown currency; a timeout on anything but a hold; a timeout outside
   0..2^31-1; the same account on both sides; a client-made expiry; a post
   or void without a hold id (or naming itself); a hold id on anything but
   a post or void; missing accounts, amount or currency.
2. The id: an existing transfer with the same fields is EXISTS, with other
   fields EXISTS_WITH_DIFFERENT_FIELDS; an id that failed for a reason that
   could change is ID_ALREADY_FAILED.
3. A post or void: the hold must exist, be a hold, match any accounts and
   currency the request names, and still be pending; a post may not exceed
   the hold and needs both accounts usable (void does not).
4. A transfer or hold: both accounts exist, share the currency, are usable
   (closed is reported before frozen), no counter overflows, the debit side
   stays within credits plus overdraft (INSUFFICIENT_FUNDS) and the credit
   side within its debits (EXCEEDS_DEBITS).

A batch first expires the overdue holds on the accounts it names (directly
or through the holds it posts or voids). Linked transfers form chains that
succeed or fail together.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CREATED = "CREATED"
EXISTS = "EXISTS"
OK = "OK"

SINGLE_PHASE = "SINGLE_PHASE"
PENDING = "PENDING"
POST_PENDING = "POST_PENDING"
VOID_PENDING = "VOID_PENDING"
EXPIRE_PENDING = "EXPIRE_PENDING"

BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1

# Failures that might not happen at another moment; their ids are burnt.
TRANSIENT = frozenset(
    {
        "DEBIT_ACCOUNT_NOT_FOUND",
        "CREDIT_ACCOUNT_NOT_FOUND",
        "ACCOUNT_FROZEN",
        "ACCOUNT_CLOSED",
        "CURRENCY_MISMATCH",
        "INSUFFICIENT_FUNDS",
        "EXCEEDS_DEBITS",
        "BALANCE_OVERFLOW",
        "PENDING_TRANSFER_NOT_FOUND",
        "PENDING_TRANSFER_NOT_PENDING",
        "PENDING_TRANSFER_ALREADY_POSTED",
        "PENDING_TRANSFER_ALREADY_VOIDED",
        "PENDING_TRANSFER_EXPIRED",
        "EXCEEDS_PENDING_AMOUNT",
        "PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS",
        "PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY",
    }
)


@dataclass(frozen=True)
class Request:
    """One transfer as a client sends it; None marks a field left out."""

    id: uuid.UUID
    kind: str
    debit: uuid.UUID | None
    credit: uuid.UUID | None
    amount: int | None
    currency: str | None
    pending_id: uuid.UUID | None = None
    timeout: int = 0
    code: int = 0
    linked: bool = False

    def fields(self) -> tuple[object, ...]:
        """What makes two requests with one id the same request (linked does not)."""
        return (
            self.kind,
            self.debit,
            self.credit,
            self.amount,
            self.currency,
            self.pending_id,
            self.timeout,
            self.code,
        )


@dataclass
class Account:
    id: uuid.UUID
    currency: str
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    overdraft: int = 0
    status: str = "ACTIVE"
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def is_empty(self) -> bool:
        return (
            self.debits_posted == self.credits_posted
            and self.debits_pending == 0
            and self.credits_pending == 0
        )


@dataclass
class Transfer:
    request: Request
    debit: uuid.UUID
    credit: uuid.UUID
    amount: int
    currency: str
    expires_at: datetime | None = None
    # Holds only: PENDING, then POSTED, VOIDED or EXPIRED.
    state: str | None = None


@dataclass
class ReferenceLedger:
    currencies: frozenset[str]
    accounts: dict[uuid.UUID, Account] = field(default_factory=dict)
    transfers: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)

    # -- accounts -------------------------------------------------------------

    def open_account(self, account: Account) -> bool:
        """True if this opened it; False if the same account was already open."""
        if account.id in self.accounts:
            return False
        self.accounts[account.id] = account
        return True

    def freeze(self, account_id: uuid.UUID, now: datetime) -> str:
        return self._change_status(account_id, now, "FROZEN")

    def unfreeze(self, account_id: uuid.UUID, now: datetime) -> str:
        return self._change_status(account_id, now, "ACTIVE")

    def close(self, account_id: uuid.UUID, now: datetime) -> str:
        return self._change_status(account_id, now, "CLOSED")

    def _change_status(self, account_id: uuid.UUID, now: datetime, status: str) -> str:
        account = self.accounts.get(account_id)
        if account is None:
            return "ACCOUNT_NOT_FOUND"
        if account.status == "CLOSED":
            return OK if status == "CLOSED" else "ACCOUNT_CLOSED"
        before = self._snapshot()
        # Overdue holds on the account lapse first, so they do not block closing.
        self._expire_overdue(now, {account_id})
        if status == "CLOSED" and not account.is_empty():
            self._restore(before)
            return "ACCOUNT_BALANCE_NOT_ZERO"
        account.status = status
        return OK

    # -- transfers ------------------------------------------------------------

    def expire_due_holds(self, now: datetime) -> int:
        """The sweeper: release every overdue hold; how many."""
        return self._expire_overdue(now, None)

    def create_transfers(self, requests: Sequence[Request], now: datetime) -> list[str]:
        if not requests:
            return []
        named: set[uuid.UUID] = set()
        for r in requests:
            named |= {a for a in (r.debit, r.credit) if a is not None}
            if r.pending_id is not None and r.pending_id in self.transfers:
                hold = self.transfers[r.pending_id]
                named |= {hold.debit, hold.credit}
        self._expire_overdue(now, named)

        results: list[str] = []
        chain: list[Request] = []
        for r in requests:
            chain.append(r)
            if not r.linked:
                results += self._chain(chain, now)
                chain = []
        if chain:
            results += ["LINKED_EVENT_FAILED"] * (len(chain) - 1) + ["LINKED_EVENT_CHAIN_OPEN"]
        return results

    def _chain(self, chain: list[Request], now: datetime) -> list[str]:
        if len(chain) == 1:
            (only,) = chain
            result = self._one(only, now)
            if result in TRANSIENT:
                self.failed[only.id] = result
            return [result]
        before = self._snapshot()
        results: list[str] = []
        for r in chain:
            results.append(self._one(r, now))
            if results[-1] not in (CREATED, EXISTS):
                break
        if all(result in (CREATED, EXISTS) for result in results):
            return results
        self._restore(before)
        failed_at = len(results) - 1
        reason = results[failed_at]
        if reason in TRANSIENT:
            self.failed[chain[failed_at].id] = reason
        out = []
        for i, r in enumerate(chain):
            if i == failed_at:
                out.append(reason)
            elif i < failed_at and results[i] == EXISTS and r.id in self.transfers:
                out.append(EXISTS)
            else:
                out.append("LINKED_EVENT_FAILED")
        return out

    def _one(self, r: Request, now: datetime) -> str:
        shape = self._shape_error(r)
        if shape:
            return shape
        if r.id in self.transfers:
            same = self.transfers[r.id].request.fields() == r.fields()
            return EXISTS if same else "EXISTS_WITH_DIFFERENT_FIELDS"
        if r.id in self.failed:
            return "ID_ALREADY_FAILED"
        if r.kind in (POST_PENDING, VOID_PENDING):
            return self._resolve(r)
        return self._move(r, now)

    def _shape_error(self, r: Request) -> str | None:
        if r.id.int == 0:
            return "INVALID_ID"
        if r.amount is not None and not 0 < r.amount <= BIGINT_MAX:
            return "INVALID_AMOUNT"
        if r.currency is not None and r.currency not in self.currencies:
            return "INVALID_CURRENCY"
        if r.timeout != 0 and r.kind != PENDING:
            return "TIMEOUT_RESERVED_FOR_PENDING_TRANSFER"
        if not 0 <= r.timeout <= INTEGER_MAX:
            return "INVALID_ARGUMENT"
        if r.debit is not None and r.debit == r.credit:
            return "ACCOUNTS_MUST_BE_DIFFERENT"
        if r.kind == EXPIRE_PENDING:
            return "INVALID_ARGUMENT"
        if r.kind in (POST_PENDING, VOID_PENDING):
            if r.pending_id is None or r.pending_id.int == 0 or r.pending_id == r.id:
                return "INVALID_ID"
            return None
        if r.pending_id is not None:
            return "INVALID_ARGUMENT"
        if r.debit is None or r.credit is None:
            return "INVALID_ID"
        if r.amount is None:
            return "INVALID_AMOUNT"
        if r.currency is None:
            return "INVALID_CURRENCY"
        return None

    def _resolve(self, r: Request) -> str:
        assert r.pending_id is not None
        hold = self.transfers.get(r.pending_id)
        if hold is None:
            return "PENDING_TRANSFER_NOT_FOUND"
        if hold.request.kind != PENDING:
            return "PENDING_TRANSFER_NOT_PENDING"
        if (r.debit is not None and r.debit != hold.debit) or (
            r.credit is not None and r.credit != hold.credit
        ):
            return "PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS"
        if r.currency is not None and r.currency != hold.currency:
            return "PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY"
        if hold.state == "POSTED":
            return "PENDING_TRANSFER_ALREADY_POSTED"
        if hold.state == "VOIDED":
            return "PENDING_TRANSFER_ALREADY_VOIDED"
        if hold.state == "EXPIRED":
            return "PENDING_TRANSFER_EXPIRED"
        debit, credit = self.accounts[hold.debit], self.accounts[hold.credit]
        if r.kind == POST_PENDING:
            amount = hold.amount if r.amount is None else r.amount
            if amount > hold.amount:
                return "EXCEEDS_PENDING_AMOUNT"
            unusable = _unusable(debit, credit)
            if unusable:
                return unusable
            posted, state = amount, "POSTED"
        else:
            amount, posted, state = hold.amount, 0, "VOIDED"
        self._release(hold, posted)
        hold.state = state
        self.transfers[r.id] = Transfer(r, hold.debit, hold.credit, amount, hold.currency)
        return CREATED

    def _move(self, r: Request, now: datetime) -> str:
        assert r.debit is not None and r.credit is not None
        assert r.amount is not None and r.currency is not None
        debit, credit = self.accounts.get(r.debit), self.accounts.get(r.credit)
        if debit is None:
            return "DEBIT_ACCOUNT_NOT_FOUND"
        if credit is None:
            return "CREDIT_ACCOUNT_NOT_FOUND"
        if debit.currency != r.currency or credit.currency != r.currency:
            return "CURRENCY_MISMATCH"
        unusable = _unusable(debit, credit)
        if unusable:
            return unusable
        amount = r.amount
        for a in (debit, credit):
            biggest = max(a.debits_posted + a.debits_pending, a.credits_posted + a.credits_pending)
            if biggest + amount > BIGINT_MAX:
                return "BALANCE_OVERFLOW"
        if debit.debits_must_not_exceed_credits and (
            debit.debits_posted + debit.debits_pending + amount
            > debit.credits_posted + debit.overdraft
        ):
            return "INSUFFICIENT_FUNDS"
        if credit.credits_must_not_exceed_debits and (
            credit.credits_posted + credit.credits_pending + amount > credit.debits_posted
        ):
            return "EXCEEDS_DEBITS"
        if r.kind == PENDING:
            debit.debits_pending += amount
            credit.credits_pending += amount
            expires = now + timedelta(seconds=r.timeout) if r.timeout else None
            self.transfers[r.id] = Transfer(
                r, debit.id, credit.id, amount, r.currency, expires, "PENDING"
            )
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
            self.transfers[r.id] = Transfer(r, debit.id, credit.id, amount, r.currency)
        return CREATED

    # -- holds ------------------------------------------------------------------

    def open_holds(self) -> list[uuid.UUID]:
        return [i for i, t in self.transfers.items() if t.state == "PENDING"]

    def expiry_times(self) -> list[datetime]:
        """When the open holds that have a timeout expire."""
        return sorted(
            t.expires_at
            for t in self.transfers.values()
            if t.state == "PENDING" and t.expires_at is not None
        )

    def _expire_overdue(self, now: datetime, accounts: Iterable[uuid.UUID] | None) -> int:
        touching = None if accounts is None else set(accounts)
        expired = 0
        for hold in self.transfers.values():
            overdue = (
                hold.state == "PENDING" and hold.expires_at is not None and hold.expires_at <= now
            )
            near = touching is None or hold.debit in touching or hold.credit in touching
            if overdue and near:
                self._release(hold, 0)
                hold.state = "EXPIRED"
                expired += 1
        return expired

    def _release(self, hold: Transfer, posted: int) -> None:
        debit, credit = self.accounts[hold.debit], self.accounts[hold.credit]
        debit.debits_pending -= hold.amount
        credit.credits_pending -= hold.amount
        debit.debits_posted += posted
        credit.credits_posted += posted

    # -- undo ---------------------------------------------------------------------

    def _snapshot(self) -> tuple[dict[uuid.UUID, Account], dict[uuid.UUID, Transfer]]:
        return copy.deepcopy((self.accounts, self.transfers))

    def _restore(
        self, snapshot: tuple[dict[uuid.UUID, Account], dict[uuid.UUID, Transfer]]
    ) -> None:
        self.accounts, self.transfers = copy.deepcopy(snapshot)


def _unusable(*accounts: Account) -> str | None:
    statuses = {a.status for a in accounts}
    if "CLOSED" in statuses:
        return "ACCOUNT_CLOSED"
    if "FROZEN" in statuses:
        return "ACCOUNT_FROZEN"
    return None
