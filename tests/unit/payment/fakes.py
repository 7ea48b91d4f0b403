"""In-memory stand-ins for the payment service's ports, faithful where it matters.

* `FakeLedger` keeps TigerBeetle's id rules: a transfer id is used once
  forever (an identical retry is EXISTS, a refused id fails again with
  ID_ALREADY_FAILED), holds are posted, voided or expired once, and debits
  need available funds. `down` makes it unreachable, `transfers_down` only
  for transfers (it answered the account lookup, then went away), and
  `lose_next_answer` makes it do the work and then time out, as a network
  cut would.
* `FakeRisk` answers by amount, like the integration tests' scripted server.
* `MemoryUnitOfWork` commits copies into a shared `MemoryStore`, so an
  uncommitted change is lost as it would be in PostgreSQL.
* `MemoryLocks` are plain asyncio locks (one process is all a unit test has).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from services.payment.domain.idempotency import IdempotencyRecord, StoredResponse
from services.payment.domain.model import Payment, PaymentStatus, RefundStatus, RiskOutcome
from services.payment.service_layer.ports import (
    DependencyUnavailable,
    HoldState,
    LedgerAccount,
    LedgerTransfer,
    RiskDecision,
    RiskRequest,
    TransferKind,
    TransferOutcome,
    TransferRequest,
)
from services.payment.service_layer.unit_of_work import LockTimeout, WriteConflict


class FixedClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


# -- ledger ----------------------------------------------------------------------------------


@dataclass
class FakeLedger:
    clock: FixedClock
    accounts: dict[uuid.UUID, LedgerAccount] = field(default_factory=dict)
    available: dict[uuid.UUID, int] = field(default_factory=dict)
    posted: dict[uuid.UUID, int] = field(default_factory=dict)
    transfers: dict[uuid.UUID, tuple[TransferRequest, LedgerTransfer]] = field(default_factory=dict)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)
    frozen: set[uuid.UUID] = field(default_factory=set)
    down: bool = False
    # Down only for transfers: it answered the account lookup, then went away.
    transfers_down: bool = False
    lose_next_answer: bool = False
    sent: list[TransferRequest] = field(default_factory=list)
    # Seconds each transfer takes, and the most ever in flight at once.
    delay: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0

    def open(self, customer_id: str = "", funds: int = 0) -> uuid.UUID:
        account_id = uuid.uuid4()
        self.accounts[account_id] = LedgerAccount(account_id, customer_id, "EUR")
        self.available[account_id] = funds
        self.posted[account_id] = funds
        return account_id

    def _check_up(self) -> None:
        if self.down:
            raise DependencyUnavailable("account", "UNAVAILABLE")

    async def get_account(self, account_id: uuid.UUID) -> LedgerAccount | None:
        self._check_up()
        return self.accounts.get(account_id)

    async def get_transfer(self, transfer_id: uuid.UUID) -> LedgerTransfer | None:
        self._check_up()
        found = self.transfers.get(transfer_id)
        return None if found is None else found[1]

    async def create_transfer(self, request: TransferRequest) -> TransferOutcome:
        self._check_up()
        if self.transfers_down:
            raise DependencyUnavailable("account", "UNAVAILABLE")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.sent.append(request)
        outcome = self._apply(request)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise DependencyUnavailable("account", "DEADLINE_EXCEEDED")
        return outcome

    def expire(self, hold_id: uuid.UUID) -> None:
        request, hold = self.transfers[hold_id]
        assert hold.pending_state is HoldState.PENDING
        self.available[request.debit_account_id] += hold.amount  # type: ignore[index]
        self.transfers[hold_id] = (request, replace(hold, pending_state=HoldState.EXPIRED))

    def _apply(self, r: TransferRequest) -> TransferOutcome:
        if r.id in self.transfers:
            first, transfer = self.transfers[r.id]
            if first != r:
                return TransferOutcome(reason="EXISTS_WITH_DIFFERENT_FIELDS")
            return TransferOutcome(transfer=transfer, existed=True)
        if r.id in self.failed:
            return TransferOutcome(reason="ID_ALREADY_FAILED")
        reason = self._refusal(r)
        if reason:
            self.failed[r.id] = reason
            return TransferOutcome(reason=reason)
        transfer = self._book(r)
        self.transfers[r.id] = (r, transfer)
        return TransferOutcome(transfer=transfer)

    def _refusal(self, r: TransferRequest) -> str:
        if r.kind in (TransferKind.SINGLE_PHASE, TransferKind.PENDING):
            assert r.debit_account_id and r.credit_account_id and r.amount
            if r.debit_account_id not in self.accounts:
                return "DEBIT_ACCOUNT_NOT_FOUND"
            if r.credit_account_id not in self.accounts:
                return "CREDIT_ACCOUNT_NOT_FOUND"
            if {r.debit_account_id, r.credit_account_id} & self.frozen:
                return "ACCOUNT_FROZEN"
            if self.available[r.debit_account_id] < r.amount:
                return "INSUFFICIENT_FUNDS"
            return ""
        assert r.pending_id is not None
        if r.pending_id not in self.transfers:
            return "PENDING_TRANSFER_NOT_FOUND"
        hold_request, hold = self.transfers[r.pending_id]
        if hold.pending_state is not HoldState.PENDING:
            return {
                HoldState.POSTED: "PENDING_TRANSFER_ALREADY_POSTED",
                HoldState.VOIDED: "PENDING_TRANSFER_ALREADY_VOIDED",
                HoldState.EXPIRED: "PENDING_TRANSFER_EXPIRED",
            }[hold.pending_state or HoldState.EXPIRED]
        accounts = {hold_request.debit_account_id, hold_request.credit_account_id}
        if r.kind is TransferKind.POST_PENDING and accounts & self.frozen:
            return "ACCOUNT_FROZEN"
        return ""

    def _book(self, r: TransferRequest) -> LedgerTransfer:
        if r.kind is TransferKind.SINGLE_PHASE:
            assert r.debit_account_id and r.credit_account_id and r.amount
            self._move(r.debit_account_id, r.credit_account_id, r.amount)
            return LedgerTransfer(r.id, r.kind.value, r.amount, r.currency or "EUR")
        if r.kind is TransferKind.PENDING:
            assert r.debit_account_id and r.amount
            self.available[r.debit_account_id] -= r.amount
            expires = self.clock.now() + timedelta(seconds=r.timeout_seconds)
            return LedgerTransfer(
                r.id, r.kind.value, r.amount, r.currency or "EUR", HoldState.PENDING, expires
            )
        assert r.pending_id is not None
        hold_request, hold = self.transfers[r.pending_id]
        assert hold_request.debit_account_id and hold_request.credit_account_id
        self.available[hold_request.debit_account_id] += hold.amount
        if r.kind is TransferKind.POST_PENDING:
            self._move(hold_request.debit_account_id, hold_request.credit_account_id, hold.amount)
            state = HoldState.POSTED
        else:
            state = HoldState.VOIDED
        self.transfers[r.pending_id] = (hold_request, replace(hold, pending_state=state))
        return LedgerTransfer(r.id, r.kind.value, hold.amount, hold.currency)

    def _move(self, debit: uuid.UUID, credit: uuid.UUID, amount: int) -> None:
        for account, delta in ((debit, -amount), (credit, amount)):
            self.available[account] += delta
            self.posted[account] += delta

    def kinds(self) -> list[str]:
        """Kinds of the transfers the ledger booked, in order."""
        return [transfer.kind for _, transfer in self.transfers.values()]


# -- risk -------------------------------------------------------------------------------------


@dataclass
class FakeRisk:
    decisions: dict[int, RiskDecision] = field(default_factory=dict)
    down: bool = False
    calls: list[uuid.UUID] = field(default_factory=list)

    def decide(self, amount: int, outcome: RiskOutcome, *reasons: str) -> None:
        self.decisions[amount] = RiskDecision(outcome, reasons, f"decision-{amount}")

    async def score(self, request: RiskRequest) -> RiskDecision:
        self.calls.append(request.transaction_id)
        if self.down:
            raise DependencyUnavailable("risk", "UNAVAILABLE")
        return self.decisions.get(request.amount, RiskDecision(RiskOutcome.APPROVE, (), "ok"))


# -- storage ----------------------------------------------------------------------------------


@dataclass
class MemoryStore:
    payments: dict[uuid.UUID, Payment] = field(default_factory=dict)
    keys: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)


class MemoryRepository:
    def __init__(self, staged: MemoryStore) -> None:
        self._s = staged

    async def get_key(self, scope: str, key: str) -> IdempotencyRecord | None:
        return self._s.keys.get((scope, key))

    async def add_key(self, record: IdempotencyRecord) -> bool:
        if (record.scope, record.key) in self._s.keys:
            return False
        self._s.keys[(record.scope, record.key)] = record
        return True

    async def store_response(
        self, scope: str, key: str, response: StoredResponse, now: datetime
    ) -> None:
        record = self._s.keys[(scope, key)]
        if record.response is None:
            self._s.keys[(scope, key)] = replace(record, response=copy.deepcopy(response))

    async def add(self, payment: Payment) -> bool:
        if payment.id in self._s.payments:
            return False
        payment.stored_history = len(payment.history)
        self._s.payments[payment.id] = copy.deepcopy(payment)
        return True

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        found = self._s.payments.get(payment_id)
        return copy.deepcopy(found)

    async def save(self, payment: Payment) -> None:
        stored = self._s.payments[payment.id]
        if stored.version != payment.version:
            raise WriteConflict("stale")
        payment.version += 1
        payment.stored_history = len(payment.history)
        self._s.payments[payment.id] = copy.deepcopy(payment)

    async def list_for_account(
        self, account_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Payment]:
        mine = [
            p
            for p in self._s.payments.values()
            if account_id in (p.source_account_id, p.destination_account_id)
            and (before is None or (p.created_at, p.id) < before)
        ]
        mine.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        return copy.deepcopy(mine[:limit])

    async def needing_attention(
        self, now: datetime, stale_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        due = []
        for p in self._s.payments.values():
            stale = p.updated_at < stale_before
            pending_refund = any(r.status is RefundStatus.PENDING for r in p.refunds)
            in_review = p.status is PaymentStatus.IN_REVIEW
            if (
                (p.status is PaymentStatus.PENDING and stale)
                or (pending_refund and stale)
                or (in_review and p.review_decision is not None and stale)
                or (in_review and p.hold_expires_at is not None and p.hold_expires_at <= now)
            ):
                due.append(p.id)
        return due[:limit]


class MemoryUnitOfWork:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._staged = MemoryStore()

    @property
    def payments(self) -> MemoryRepository:
        return MemoryRepository(self._staged)

    async def __aenter__(self) -> Self:
        self._staged = copy.deepcopy(self._store)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass  # uncommitted changes are simply dropped

    async def commit(self) -> None:
        self._store.payments = self._staged.payments
        self._store.keys = self._staged.keys


class MemoryLocks:
    def __init__(self) -> None:
        self.locks: dict[uuid.UUID, asyncio.Lock] = {}

    def _lock(self, payment_id: uuid.UUID) -> asyncio.Lock:
        return self.locks.setdefault(payment_id, asyncio.Lock())

    @asynccontextmanager
    async def hold(self, payment_id: uuid.UUID, wait: float) -> AsyncIterator[None]:
        lock = self._lock(payment_id)
        try:
            async with asyncio.timeout(max(wait, 0)):
                await lock.acquire()
        except TimeoutError:
            raise LockTimeout("busy") from None
        try:
            yield
        finally:
            lock.release()

    @asynccontextmanager
    async def try_hold(self, payment_id: uuid.UUID) -> AsyncIterator[bool]:
        lock = self._lock(payment_id)
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
