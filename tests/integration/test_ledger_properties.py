"""The ledger on PostgreSQL gives the same answers as a plain in-memory model.

Hypothesis drives random histories (accounts opened, deposits, payments,
holds posted in full or in part, voided or left to expire, the clock moved
on, the expiry sweeper run, accounts frozen, unfrozen or closed, ids sent
again with the same or other fields, linked chains) through the real
`Ledger` and through `tests.support.reference_ledger` side by side. After
every step each result code and each account's four counters must agree.

Time is a manual clock: it moves in whole even numbers of seconds and holds
time out after an odd number, so "is this hold overdue" is never decided by
the microseconds the ledger adds to keep timestamps increasing. Every
example starts a day earlier than the one before, far in the past, so
neither the sweeper of one example nor that of another test ever sees the
holds of another example; teardown sweeps the example's own.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.domain.engine import TransferResult
from services.account.domain.errors import LedgerError
from services.account.domain.model import AccountType, Limits, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.database import create_engine
from tests.support import reference_ledger as ref

T = TypeVar("T")

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    # Every step is a few round trips to PostgreSQL; time is bounded by the counts above.
    deadline=None,
    # Drawing happens between database calls, so generation looks slow to Hypothesis
    # although it is not. The other health checks stay on.
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Slot:
    """One of the accounts every example works with."""

    name: str
    currency: str
    type: AccountType
    limits: Limits
    open_at_start: bool = True


SLOTS = (
    Slot("bank", "EUR", AccountType.SETTLEMENT, Limits()),
    Slot("alice", "EUR", AccountType.CUSTOMER, Limits(debits_must_not_exceed_credits=True)),
    Slot(
        "bob",
        "EUR",
        AccountType.CUSTOMER,
        Limits(debits_must_not_exceed_credits=True, overdraft_limit=100),
    ),
    Slot("pool", "EUR", AccountType.INTERNAL, Limits(credits_must_not_exceed_debits=True)),
    Slot("dollars", "USD", AccountType.CUSTOMER, Limits(debits_must_not_exceed_credits=True)),
    # Not open at first: transfers to it fail until a step opens it.
    Slot("late", "EUR", AccountType.CUSTOMER, Limits(debits_must_not_exceed_credits=True), False),
)
BANK = 0
POOL = 3
# Slots drawn for the sides of a transfer: mostly the EUR customers and the bank.
DRAWN_SLOTS = (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5)
CURRENCIES = frozenset({"EUR", "USD"})
TRANSFER_CURRENCIES = ("EUR",) * 19 + ("USD",)
# Clock steps are even and hold timeouts odd (or 0: never), see the module docstring.
CLOCK_STEPS = (2, 4, 10, 30)
HOLD_TIMEOUTS = (0, 0, 1, 3, 5, 9)
# Earliest first example; each later one starts a day before the previous.
FIRST_EXAMPLE_STARTS = datetime(2001, 1, 1, tzinfo=UTC)
_example_numbers = itertools.count()

# How often each kind of request and of account chore is drawn (by repetition).
REQUESTS = (
    ("deposit",) * 4
    + ("payment",) * 5
    + ("hold",) * 4
    + ("post",) * 2
    + ("void",)
    + ("repeat", "repeat with other fields", "malformed")
)
CHORES = ("freeze",) * 2 + ("unfreeze",) * 3 + ("close", "open")
# What the initial deposits give each slot, so that most payments can succeed.
STARTING_BALANCES = {1: 300, 2: 200}


class ManualClock:
    """Time stands still until a step moves it."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: int) -> None:
        self.current += timedelta(seconds=seconds)


class LedgerAgreesWithModel(RuleBasedStateMachine):
    def __init__(self, runner: asyncio.Runner, engine: AsyncEngine, seen: Counter[str]) -> None:
        super().__init__()
        self.runner = runner
        self.seen = seen
        start = FIRST_EXAMPLE_STARTS - timedelta(days=next(_example_numbers))
        self.clock = ManualClock(start)
        self.ledger = Ledger(lambda: SqlUnitOfWork(engine), self.clock)
        self.model = ref.ReferenceLedger(currencies=CURRENCIES)
        self.ids = [uuid.uuid4() for _ in SLOTS]
        self.sent: list[ref.Request] = []
        self.batch_started_at = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    # -- steps: Hypothesis picks among rules evenly, so transfers get two -------------

    @initialize()
    def open_and_fund_the_usual_accounts(self) -> None:
        for i, slot in enumerate(SLOTS):
            if slot.open_at_start:
                self._open(i)
        funding = [
            ref.Request(uuid.uuid4(), ref.SINGLE_PHASE, self.ids[BANK], self.ids[i], amount, "EUR")
            for i, amount in STARTING_BALANCES.items()
        ]
        # The pool only takes in what it has paid out.
        funding.append(
            ref.Request(uuid.uuid4(), ref.SINGLE_PHASE, self.ids[POOL], self.ids[BANK], 200, "EUR")
        )
        self._compare(funding)

    @rule(data=st.data(), size=st.integers(2, 6))
    def send_a_batch(self, data: st.DataObject, size: int) -> None:
        self._send(data, size)

    @rule(data=st.data())
    def send_one_transfer(self, data: st.DataObject) -> None:
        self._send(data, 1)

    @rule(seconds=st.sampled_from(CLOCK_STEPS), sweep=st.booleans())
    def let_time_pass(self, seconds: int, sweep: bool) -> None:
        self.clock.advance(seconds)
        if sweep:  # otherwise the next transfers on the accounts expire what is due
            expected = self.model.expire_due_holds(self.clock.now())
            self.seen[f"sweeper expired {'some' if expected else 'none'}"] += 1
            assert self.run(self.ledger.expire_due_holds()) == expected

    @precondition(lambda self: bool(self.model.expiry_times()))
    @rule(data=st.data(), sweep=st.booleans())
    def wait_until_a_hold_lapses(self, data: st.DataObject, sweep: bool) -> None:
        expires_at = data.draw(st.sampled_from(self.model.expiry_times()), label="expiry")
        # An odd number of seconds away (or past): one more keeps the clock's steps even.
        seconds = int((expires_at - self.clock.now()).total_seconds()) + 1
        self.let_time_pass(max(seconds, 2), sweep)

    @rule(chore=st.sampled_from(CHORES), i=st.sampled_from(DRAWN_SLOTS))
    def do_a_chore(self, chore: str, i: int) -> None:
        if chore == "open":
            self._open(i)
        else:
            self._change_status(chore, i)

    # -- accounts -------------------------------------------------------------------

    def _open(self, i: int) -> None:
        slot = SLOTS[i]
        _, created = self.run(
            self.ledger.open_account(
                OpenAccount(
                    currency=slot.currency,
                    account_type=slot.type,
                    customer_id=slot.name,
                    account_id=self.ids[i],
                    limits=slot.limits,
                )
            )
        )
        expected = self.model.open_account(
            ref.Account(
                self.ids[i],
                slot.currency,
                debits_must_not_exceed_credits=slot.limits.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits=slot.limits.credits_must_not_exceed_debits,
                overdraft=slot.limits.overdraft_limit,
            )
        )
        assert created == expected, f"opening {slot.name}"

    def _change_status(self, change: str, i: int) -> None:
        account_id, now = self.ids[i], self.clock.now()
        expected = getattr(self.model, change)(account_id, now)
        try:
            self.run(getattr(self.ledger, change)(account_id))
            actual = ref.OK
        except LedgerError as refused:
            actual = refused.reason.value
        self.seen[f"{change}: {actual}"] += 1
        assert actual == expected, f"{change} {SLOTS[i].name}"

    # -- transfers ------------------------------------------------------------------

    def _send(self, data: st.DataObject, size: int) -> None:
        self.batch_started_at = len(self.sent)
        self._compare([self._draw_request(data, last=i == size - 1) for i in range(size)])

    def _compare(self, batch: list[ref.Request]) -> None:
        expected = self.model.create_transfers(batch, self.clock.now())
        results = self.run(self.ledger.create_transfers([_new_transfer(r) for r in batch]))
        actual = [_code(r) for r in results]
        self.seen.update(actual)
        assert actual == expected, "\n".join(map(self._describe, batch))

    def _draw_request(self, data: st.DataObject, *, last: bool) -> ref.Request:
        what = data.draw(st.sampled_from(REQUESTS), label="request")
        # Chains are common; one left open at the end of a batch is the odd mistake.
        linked = data.draw(st.sampled_from([False] * (19 if last else 2) + [True]), label="linked")
        request = replace(self._draw(data, what), linked=linked)
        self.sent.append(request)
        return request

    def _draw(self, data: st.DataObject, what: str) -> ref.Request:
        if what in ("repeat", "repeat with other fields") and self.sent:
            earlier = data.draw(st.sampled_from(self.sent), label="earlier request")
            return earlier if what == "repeat" else replace(earlier, code=earlier.code + 1)
        if what in ("post", "void"):
            return self._draw_resolution(data, what)
        if what == "malformed":
            return self._draw_malformed(data)
        debit = BANK if what == "deposit" else data.draw(st.sampled_from(DRAWN_SLOTS))
        # The same account on both sides is one of the malformed requests.
        credit = data.draw(st.sampled_from([i for i in DRAWN_SLOTS if i != debit]))
        return ref.Request(
            uuid.uuid4(),
            ref.PENDING if what == "hold" else ref.SINGLE_PHASE,
            self.ids[debit],
            self.ids[credit],
            data.draw(st.integers(1, 400), label="amount"),
            data.draw(st.sampled_from(TRANSFER_CURRENCIES), label="currency"),
            timeout=data.draw(st.sampled_from(HOLD_TIMEOUTS)) if what == "hold" else 0,
        )

    def _draw_malformed(self, data: st.DataObject) -> ref.Request:
        flaw = data.draw(
            st.sampled_from(["zero amount", "same account", "no such currency", "timeout"])
        )
        customer = self.ids[data.draw(st.sampled_from(DRAWN_SLOTS))]
        return ref.Request(
            uuid.uuid4(),
            ref.SINGLE_PHASE,
            self.ids[BANK],
            self.ids[BANK] if flaw == "same account" else customer,
            0 if flaw == "zero amount" else 10,
            "XYZ" if flaw == "no such currency" else "EUR",
            timeout=5 if flaw == "timeout" else 0,
        )

    def _draw_resolution(self, data: st.DataObject, what: str) -> ref.Request:
        open_holds = set(self.model.open_holds())
        holds = [r for r in self.sent if r.kind == ref.PENDING]
        target = data.draw(
            st.sampled_from(
                ["open hold"] * 3
                + ["hold of this batch"] * 2
                + ["any hold"] * 2
                + ["not a hold", "unknown"]
            )
        )
        pool = {
            "open hold": [r for r in holds if r.id in open_holds] or holds,
            # Holds and their resolutions in one batch meet in linked chains.
            "hold of this batch": [
                r for r in self.sent[self.batch_started_at :] if r.kind == ref.PENDING
            ]
            or holds,
            "any hold": holds,
            "not a hold": [r for r in self.sent if r.kind != ref.PENDING],
            "unknown": [],
        }[target]
        hold = data.draw(st.sampled_from(pool), label="hold") if pool else None
        naming = data.draw(st.sampled_from(["nothing"] * 4 + ["same", "swapped", "other currency"]))
        debit = credit = currency = None
        if hold is not None and naming == "same":
            debit, credit, currency = hold.debit, hold.credit, hold.currency
        elif hold is not None and naming == "swapped":
            debit, credit = hold.credit, hold.debit
        elif naming == "other currency":
            currency = "EUR" if hold is not None and hold.currency == "USD" else "USD"
        amount = None
        if what == "post":
            amount = data.draw(st.none() | st.integers(1, 410), label="posted amount")
        return ref.Request(
            uuid.uuid4(),
            ref.POST_PENDING if what == "post" else ref.VOID_PENDING,
            debit,
            credit,
            amount,
            currency,
            pending_id=hold.id if hold is not None else uuid.uuid4(),
        )

    def _describe(self, r: ref.Request) -> str:
        names = {account_id: slot.name for account_id, slot in zip(self.ids, SLOTS, strict=True)}
        return (
            f"{r.kind} {names.get(r.debit) if r.debit else '-'} -> "
            f"{names.get(r.credit) if r.credit else '-'} {r.amount} {r.currency} "
            f"pending={r.pending_id} timeout={r.timeout} code={r.code} linked={r.linked} "
            f"id={r.id}"
        )

    # -- what must hold after every step ----------------------------------------------

    @invariant()
    def every_account_has_the_counters_of_the_model(self) -> None:
        for slot, account_id in zip(SLOTS, self.ids, strict=True):
            expected = self.model.accounts.get(account_id)
            if expected is None:
                continue
            actual = self.run(self.ledger.get_account(account_id))
            counters = (
                actual.debits_posted,
                actual.credits_posted,
                actual.debits_pending,
                actual.credits_pending,
            )
            assert counters == expected.counters(), f"counters of {slot.name}"
            assert actual.status.value == expected.status, f"status of {slot.name}"

    def teardown(self) -> None:
        # Release this example's holds with a timeout, so no later sweeper meets them.
        # Half a day on, this example's holds are overdue and no other example's are.
        self.clock.advance(12 * 3600)
        while self.run(self.ledger.expire_due_holds()):
            pass


def _new_transfer(r: ref.Request) -> NewTransfer:
    return NewTransfer(
        id=r.id,
        kind=TransferKind(r.kind),
        debit_account_id=r.debit,
        credit_account_id=r.credit,
        amount=r.amount,
        currency=r.currency,
        pending_id=r.pending_id,
        timeout_seconds=r.timeout,
        code=r.code,
        linked=r.linked,
    )


def _code(result: TransferResult) -> str:
    return result.reason.value if result.reason is not None else result.outcome.value


def test_the_ledger_gives_the_answers_of_the_reference_model(ledger_database_url: str) -> None:
    """Random histories get the same result codes and account counters as the plain model."""
    seen: Counter[str] = Counter()
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        engine = create_engine(ledger_database_url, pool_size=2)

        class OnThisDatabase(LedgerAgreesWithModel):
            def __init__(self) -> None:
                super().__init__(runner, engine, seen)

        try:
            run_state_machine_as_test(OnThisDatabase, settings=SETTINGS)
        finally:
            runner.run(engine.dispose())
    print(f"\nreference model comparison: {sorted(seen.items())}")
    # A generator that drifted into refusing everything would compare nothing of interest.
    assert seen["CREATED"] > 100
    assert len(seen.keys() - {"CREATED", "EXISTS"}) > 10
