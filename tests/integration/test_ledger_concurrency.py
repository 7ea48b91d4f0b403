"""Many clients at once: the books still balance and every request gets an answer.

The clients are asyncio tasks, each with its own `Ledger` on the shared
connection pool, hammering a handful of hot accounts. Afterwards the
ledger must agree, cent for cent, with what the clients were told, and
with the entries it wrote.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine

from services.account.adapters.repository import LedgerRepository
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.domain.engine import Outcome, TransferResult
from services.account.domain.errors import Reason
from services.account.domain.model import (
    Account,
    AccountType,
    Direction,
    NewTransfer,
    PendingState,
    TransferKind,
)
from services.account.service_layer.ledger import Ledger, OpenAccount
from tests.support.clock import SteppingClock

CLIENTS = 8
REQUESTS_PER_CLIENT = 300
STARTING_BALANCE = 5_000
MAX_AMOUNT = 2_500
SAME_ID_CALLERS = 50


def new_ledger(engine: AsyncEngine, clock: SteppingClock) -> Ledger:
    return Ledger(lambda: SqlUnitOfWork(engine), clock)


def transfer(
    kind: TransferKind,
    debit: Account | None,
    credit: Account | None,
    amount: int | None,
    currency: str | None,
    *,
    pending_id: uuid.UUID | None = None,
    linked: bool = False,
) -> NewTransfer:
    return NewTransfer(
        uuid.uuid4(),
        kind,
        debit.id if debit else None,
        credit.id if credit else None,
        amount,
        currency,
        pending_id=pending_id,
        linked=linked,
    )


@dataclass
class Hold:
    id: uuid.UUID
    amount: int


@dataclass
class Books:
    """What the clients were told happened, kept as the ledger should have kept it."""

    net_posted: Counter[uuid.UUID] = field(default_factory=Counter)  # credits - debits
    debits_pending: Counter[uuid.UUID] = field(default_factory=Counter)
    credits_pending: Counter[uuid.UUID] = field(default_factory=Counter)
    moved: Counter[str] = field(default_factory=Counter)  # posted amounts per currency
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[BaseException] = field(default_factory=list)
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    # Holds the clients believe still open; they pick from these to post or void.
    open_holds: dict[uuid.UUID, Hold] = field(default_factory=dict)

    def record(self, request: NewTransfer, result: TransferResult) -> None:
        self.outcomes[result.reason.value if result.reason else result.outcome.value] += 1
        if result.outcome is not Outcome.CREATED:
            if result.reason in (
                Reason.PENDING_TRANSFER_ALREADY_POSTED,
                Reason.PENDING_TRANSFER_ALREADY_VOIDED,
            ):
                assert request.pending_id is not None
                self.open_holds.pop(request.pending_id, None)
            return
        created = result.transfer
        assert created is not None
        debit, credit, amount = created.debit_account_id, created.credit_account_id, created.amount
        if created.kind is TransferKind.PENDING:
            self.debits_pending[debit] += amount
            self.credits_pending[credit] += amount
            self.holds[created.id] = self.open_holds[created.id] = Hold(created.id, amount)
            return
        if created.kind.resolves_pending:
            assert created.pending_id is not None
            hold = self.holds[created.pending_id]
            self.open_holds.pop(hold.id, None)
            self.debits_pending[debit] -= hold.amount
            self.credits_pending[credit] -= hold.amount
            if created.kind is not TransferKind.POST_PENDING:
                return
        self.net_posted[debit] -= amount
        self.net_posted[credit] += amount
        self.moved[created.currency] += amount


@dataclass
class Bank:
    """The hot accounts: per currency a settlement account and its customers."""

    settlement: dict[str, Account]
    customers: dict[str, list[Account]]

    @property
    def accounts(self) -> list[Account]:
        return [*self.settlement.values(), *(c for cs in self.customers.values() for c in cs)]


async def open_bank(ledger: Ledger, books: Books) -> Bank:
    bank = Bank(settlement={}, customers={})
    for currency, names in (("EUR", ["alice", "bob", "carol"]), ("USD", ["dave"])):
        bank.settlement[currency], _ = await ledger.open_account(
            OpenAccount(currency, AccountType.SETTLEMENT)
        )
        bank.customers[currency] = [
            (await ledger.open_account(OpenAccount(currency, AccountType.CUSTOMER, name)))[0]
            for name in names
        ]
        funding = [
            transfer(
                TransferKind.SINGLE_PHASE,
                bank.settlement[currency],
                c,
                STARTING_BALANCE,
                currency,
            )
            for c in bank.customers[currency]
        ]
        for request, result in zip(funding, await ledger.create_transfers(funding), strict=True):
            books.record(request, result)
    return bank


async def client(ledger: Ledger, bank: Bank, books: Books, seed: int) -> None:
    """One busy client: payments, deposits, holds captured or released, linked fees."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traffic, not secrets
    for _ in range(REQUESTS_PER_CLIENT):
        currency = rng.choice(["EUR", "EUR", "EUR", "USD"])
        everyone = [bank.settlement[currency], *bank.customers[currency]]
        payer, payee = rng.sample(everyone, 2)
        amount = rng.randint(1, MAX_AMOUNT)
        roll = rng.random()
        holds = list(books.open_holds.values())
        if roll < 0.2 and holds:
            hold = rng.choice(holds)
            how = rng.choice(["post", "post part", "void"])
            batch = [
                NewTransfer(
                    uuid.uuid4(),
                    TransferKind.VOID_PENDING if how == "void" else TransferKind.POST_PENDING,
                    None,
                    None,
                    rng.randint(1, hold.amount) if how == "post part" else None,
                    None,
                    pending_id=hold.id,
                )
            ]
        elif roll < 0.4:
            batch = [transfer(TransferKind.PENDING, payer, payee, amount, currency)]
        elif roll < 0.45:
            # A payment and its fee, linked: both or neither.
            payer, payee = rng.sample(bank.customers["EUR"], 2)
            batch = [
                transfer(TransferKind.SINGLE_PHASE, payer, payee, amount, "EUR", linked=True),
                transfer(TransferKind.SINGLE_PHASE, payer, bank.settlement["EUR"], 15, "EUR"),
            ]
        else:
            batch = [transfer(TransferKind.SINGLE_PHASE, payer, payee, amount, currency)]
        try:
            results = await ledger.create_transfers(batch)
        except Exception as exc:  # every request must get a business answer
            books.errors.append(exc)
            continue
        for request, result in zip(batch, results, strict=True):
            books.record(request, result)


async def entries_totals(ledger: Ledger, account: Account) -> tuple[tuple[int, int, int, int], int]:
    """Counters rebuilt from the account's whole statement, and how many entries it has."""
    dp = cp = dpe = cpe = 0
    token, count, newest = "", 0, None
    previous_time = None
    while True:
        page = await ledger.list_entries(account.id, 500, token)
        for entry in page.items:
            if newest is None:
                newest = entry.balances_after
            if previous_time is not None:
                assert entry.created_at < previous_time, "entries of an account share a time"
            previous_time = entry.created_at
            count += 1
            if entry.direction is Direction.DEBIT:
                dp += entry.posted_delta
                dpe += entry.pending_delta
            else:
                cp += entry.posted_delta
                cpe += entry.pending_delta
        token = page.next_page_token
        if not token:
            break
    assert newest is not None
    head = (
        newest.debits_posted,
        newest.credits_posted,
        newest.debits_pending,
        newest.credits_pending,
    )
    assert head == (dp, cp, dpe, cpe), "the newest entry's balances are the sum of all entries"
    return (dp, cp, dpe, cpe), count


async def test_eight_busy_clients_leave_the_books_balanced_to_the_cent(
    ledger_engine: AsyncEngine,
    clock: SteppingClock,
    record_property: Callable[[str, object], None],
) -> None:
    """Thousands of concurrent transfers: debits equal credits, no overdraft, no request lost."""
    books = Books()
    bank = await open_bank(new_ledger(ledger_engine, clock), books)
    started = time.perf_counter()
    await asyncio.gather(
        *(client(new_ledger(ledger_engine, clock), bank, books, seed) for seed in range(CLIENTS))
    )
    elapsed = time.perf_counter() - started

    assert books.errors == [], "requests that got an exception instead of an answer"
    answered = sum(books.outcomes.values())
    ledger = new_ledger(ledger_engine, clock)
    totals: dict[str, Counter[str]] = {}
    for account in bank.accounts:
        now = await ledger.get_account(account.id)
        b = now.balances
        # What the ledger holds is exactly what the clients were told.
        assert b.credits_posted - b.debits_posted == books.net_posted[account.id]
        assert b.debits_pending == books.debits_pending[account.id]
        assert b.credits_pending == books.credits_pending[account.id]
        if now.limits.debits_must_not_exceed_credits:
            assert b.debits_posted + b.debits_pending <= b.credits_posted, "overdrawn"
        rebuilt, _ = await entries_totals(ledger, account)
        assert rebuilt == (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
        total = totals.setdefault(account.currency, Counter())
        total["net"] += b.credits_posted - b.debits_posted
        total["credits"] += b.credits_posted
        total["debits"] += b.debits_posted
    for currency, total in totals.items():
        assert total["net"] == 0, f"{currency} does not balance"
        assert total["credits"] == total["debits"] == books.moved[currency]

    assert books.outcomes["CREATED"] > answered // 2
    assert books.outcomes["INSUFFICIENT_FUNDS"] > 0
    summary = (
        f"{CLIENTS} clients, {CLIENTS * REQUESTS_PER_CLIENT} requests, "
        f"{answered} transfers answered ({books.outcomes['CREATED']} created) "
        f"on {len(bank.accounts)} accounts in {elapsed:.1f}s "
        f"({answered / elapsed:.0f} transfers/s); outcomes {dict(books.outcomes)}"
    )
    record_property("ledger_concurrency", summary)
    print(f"\nconcurrency: {summary}")


async def test_fifty_callers_sending_the_same_transfer_book_it_once(
    ledger_engine: AsyncEngine, clock: SteppingClock
) -> None:
    """One caller creates it, the other 49 are told it exists; the money moves once."""
    ledger = new_ledger(ledger_engine, clock)
    books = Books()
    bank = await open_bank(ledger, books)
    alice, bob = bank.customers["EUR"][:2]
    payment = transfer(TransferKind.SINGLE_PHASE, alice, bob, 1234, "EUR")
    answers = await asyncio.gather(
        *(new_ledger(ledger_engine, clock).create_transfer(payment) for _ in range(SAME_ID_CALLERS))
    )
    assert sorted(existed for _, existed in answers) == [False] + [True] * (SAME_ID_CALLERS - 1)
    assert all(created == answers[0][0] for created, _ in answers)
    assert (await ledger.get_account(bob.id)).balances.posted == STARTING_BALANCE + 1234
    _, entries = await entries_totals(ledger, bob)
    assert entries == 2  # the starting deposit and this payment, once


async def test_fifty_callers_sending_the_same_refused_transfer_all_stay_refused(
    ledger_engine: AsyncEngine, clock: SteppingClock
) -> None:
    """The first is INSUFFICIENT_FUNDS; all the others are ID_ALREADY_FAILED, none succeeds."""
    ledger = new_ledger(ledger_engine, clock)
    bank = await open_bank(ledger, Books())
    alice, bob = bank.customers["EUR"][:2]
    too_much = transfer(TransferKind.SINGLE_PHASE, alice, bob, STARTING_BALANCE + 1, "EUR")
    results = await asyncio.gather(
        *(
            new_ledger(ledger_engine, clock).create_transfers([too_much])
            for _ in range(SAME_ID_CALLERS)
        )
    )
    reasons = Counter(r.reason for (r,) in results)
    assert reasons == {
        Reason.INSUFFICIENT_FUNDS: 1,
        Reason.ID_ALREADY_FAILED: SAME_ID_CALLERS - 1,
    }
    assert (await ledger.get_account(bob.id)).balances.posted == STARTING_BALANCE


async def test_a_hold_captured_and_released_at_once_is_resolved_exactly_once(
    ledger_engine: AsyncEngine, clock: SteppingClock
) -> None:
    """Twenty racing posts and voids of one hold: one wins, the rest learn what it did."""
    ledger = new_ledger(ledger_engine, clock)
    books = Books()
    bank = await open_bank(ledger, books)
    alice, shop = bank.customers["EUR"][:2]
    hold = transfer(TransferKind.PENDING, alice, shop, 1000, "EUR")
    await ledger.create_transfer(hold)
    racers = [
        transfer(
            TransferKind.POST_PENDING if i % 2 else TransferKind.VOID_PENDING,
            None,
            None,
            None,
            None,
            pending_id=hold.id,
        )
        for i in range(20)
    ]
    results = await asyncio.gather(
        *(new_ledger(ledger_engine, clock).create_transfers([r]) for r in racers)
    )
    winners = [r for (r,) in results if r.outcome is Outcome.CREATED]
    assert len(winners) == 1
    (winner,) = winners
    assert winner.transfer is not None
    posted = winner.transfer.kind is TransferKind.POST_PENDING
    expected_loss = (
        Reason.PENDING_TRANSFER_ALREADY_POSTED if posted else Reason.PENDING_TRANSFER_ALREADY_VOIDED
    )
    assert {r.reason for (r,) in results if r is not winner} == {expected_loss}
    state = (await ledger.get_transfer(hold.id)).pending_state
    assert state is (PendingState.POSTED if posted else PendingState.VOIDED)
    alice_now = (await ledger.get_account(alice.id)).balances
    assert alice_now.debits_pending == 0
    assert alice_now.posted == STARTING_BALANCE - (1000 if posted else 0)


class _SomethingHappensBeforeLocking(LedgerRepository):
    """Runs `meanwhile` between a batch's unlocked reads and its locks."""

    def __init__(self, inner: LedgerRepository, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__(inner._conn)
        self._meanwhile = meanwhile

    async def lock_accounts(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Account]:
        await self._meanwhile()
        return await super().lock_accounts(ids)


async def test_a_capture_racing_the_authorisation_it_names_is_retried_not_crashed(
    ledger_engine: AsyncEngine, clock: SteppingClock
) -> None:
    """A capture whose hold commits while the capture is being loaded still succeeds."""
    ledger = new_ledger(ledger_engine, clock)
    bank = await open_bank(ledger, Books())
    alice, shop = bank.customers["EUR"][:2]
    hold = transfer(TransferKind.PENDING, alice, shop, 700, "EUR")
    raced = False

    async def authorise_now() -> None:
        nonlocal raced
        if not raced:
            raced = True
            await ledger.create_transfer(hold)

    class RacingUnitOfWork(SqlUnitOfWork):
        async def __aenter__(self) -> Self:
            await super().__aenter__()
            # Another client's authorisation commits (on its own connection) right here.
            self.ledger = _SomethingHappensBeforeLocking(self.ledger, authorise_now)
            return self

    racing = Ledger(lambda: RacingUnitOfWork(ledger_engine), clock)
    capture = transfer(TransferKind.POST_PENDING, None, None, None, None, pending_id=hold.id)
    captured, existed = await racing.create_transfer(capture)
    assert raced and not existed and captured.amount == 700
    assert (await ledger.get_transfer(hold.id)).pending_state is PendingState.POSTED
    assert (await ledger.get_account(shop.id)).balances.posted == STARTING_BALANCE + 700
