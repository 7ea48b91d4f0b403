"""The payment use cases over in-memory fakes of storage, the ledger and risk.

These tests stage the awkward moments the integration tests cannot easily
reach: an answer lost on the wire, a crash between two steps, a hold that
expired while a reviewer thought about it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.payment.domain import ids
from services.payment.domain.access import RECOVERY_ACTOR, Caller
from services.payment.domain.errors import (
    AccountNotFound,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    LedgerRefused,
    PaymentNotFound,
    PaymentNotInReview,
    PermissionDenied,
)
from services.payment.domain.model import PaymentRequest, PaymentStatus, RiskOutcome, Route
from services.payment.service_layer import deadlines
from services.payment.service_layer.payments import Payments, RefundRequest, Settings
from services.payment.service_layer.ports import DependencyUnavailable, HoldState
from services.payment.service_layer.recovery import CONCURRENCY as RECOVERY_CONCURRENCY
from services.payment.service_layer.recovery import Recovery

from .fakes import FakeLedger, FakeRisk, FixedClock, MemoryLocks, MemoryStore, MemoryUnitOfWork

SERVICE = Caller.service("edge")
REVIEWER = Caller.end_user(
    "rev-1", customer_id="", roles=frozenset({"reviewer"}), is_customer=False
)


def customer(customer_id: str) -> Caller:
    return Caller.end_user(
        f"user-{customer_id}",
        customer_id=customer_id,
        roles=frozenset({"customer"}),
        is_customer=True,
    )


class World:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = MemoryStore()
        self.ledger = FakeLedger(self.clock)
        self.risk = FakeRisk()
        self.locks = MemoryLocks()
        self.crashes: list[str] = []
        self.payments = self.build()
        self.alice = self.ledger.open("alice", funds=10_000)
        self.bob = self.ledger.open("bob")

    def build(self, crash_at: str = "") -> Payments:
        def crash(step: str) -> None:
            if step == crash_at:
                self.crashes.append(step)
                raise Crash(step)

        return Payments(
            lambda: MemoryUnitOfWork(self.store),
            self.locks,
            self.ledger,
            self.risk,
            self.clock,
            Settings(review_timeout_seconds=3600, default_wait_seconds=0.2),
            crash=crash,
        )

    async def recover(self) -> int:
        """A pass of the recovery loop a little later (a stuck payment is an old one)."""
        self.clock.advance(1)
        recovery = Recovery(
            self.payments, lambda: MemoryUnitOfWork(self.store), self.clock, grace_seconds=0.5
        )
        return await recovery.run_once()

    def request(self, amount: int = 1_000, key: str = "k-1", **changes: object) -> PaymentRequest:
        fields: dict[str, object] = {
            "idempotency_key": key,
            "source_account_id": self.alice,
            "destination_account_id": self.bob,
            "amount": amount,
            "currency": "EUR",
        }
        fields.update(changes)
        return PaymentRequest(**fields)  # type: ignore[arg-type]


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after the step runs, nothing is cleaned up."""


@pytest.fixture
def world() -> World:
    return World()


# -- the happy paths ---------------------------------------------------------------------


async def test_an_approved_payment_is_one_single_phase_transfer(world: World) -> None:
    """APPROVE: COMPLETED after exactly one ledger transfer, whose id derives from the payment."""
    p = await world.payments.create(SERVICE, world.request(1_000))
    assert p.status is PaymentStatus.COMPLETED
    assert world.ledger.kinds() == ["SINGLE_PHASE"]
    assert list(world.ledger.transfers) == [ids.transfer_id(p.id, ids.TRANSFER)]
    assert world.ledger.posted[world.bob] == 1_000


async def test_a_replay_returns_the_first_answer_without_doing_anything(world: World) -> None:
    """Same key, same request: the stored payment, no second risk call, no second transfer."""
    first = await world.payments.create(SERVICE, world.request())
    again = await world.payments.create(SERVICE, world.request())
    assert again == first
    assert len(world.risk.calls) == 1
    assert len(world.ledger.sent) == 1


async def test_a_replay_shows_the_payment_as_it_was_answered(world: World) -> None:
    """Stripe semantics: after a refund, replaying the create still answers COMPLETED."""
    first = await world.payments.create(SERVICE, world.request())
    await world.payments.refund(SERVICE, RefundRequest(first.id, "r-1"))
    again = await world.payments.create(SERVICE, world.request())
    assert again.status is PaymentStatus.COMPLETED
    assert (await world.payments.get(SERVICE, first.id)).status is PaymentStatus.REFUNDED


async def test_a_key_reused_for_another_payment_is_refused(world: World) -> None:
    """Same key, other amount: IDEMPOTENCY_KEY_REUSED, and only the first payment exists."""
    await world.payments.create(SERVICE, world.request(1_000))
    with pytest.raises(IdempotencyKeyReused):
        await world.payments.create(SERVICE, world.request(2_000))
    assert world.ledger.posted[world.alice] == 9_000


async def test_keys_of_different_callers_never_meet(world: World) -> None:
    """Two callers choosing the same key make two payments."""
    a = await world.payments.create(SERVICE, world.request(100))
    b = await world.payments.create(Caller.service("batch"), world.request(200))
    assert a.id != b.id
    assert world.ledger.posted[world.bob] == 300


# -- outages and lost answers ---------------------------------------------------------------


async def test_a_lost_ledger_answer_is_resent_with_the_same_id_and_moves_money_once(
    world: World,
) -> None:
    """The ledger booked it but the answer was lost: PENDING, then the retry gets EXISTS."""
    world.ledger.lose_next_answer = True
    first = await world.payments.create(SERVICE, world.request(1_000))
    assert first.status is PaymentStatus.PENDING
    again = await world.payments.create(SERVICE, world.request(1_000))
    assert again.status is PaymentStatus.COMPLETED
    assert world.ledger.kinds() == ["SINGLE_PHASE"]
    assert [r.id for r in world.ledger.sent] == [ids.transfer_id(first.id, ids.TRANSFER)] * 2
    assert world.ledger.posted[world.alice] == 9_000


async def test_with_the_ledger_down_the_payment_waits_and_recovery_finishes_it(
    world: World,
) -> None:
    """Ledger down: PENDING, no answer stored; the recovery loop completes it later."""
    world.ledger.transfers_down = True
    pending = await world.payments.create(SERVICE, world.request())
    assert pending.status is PaymentStatus.PENDING
    world.ledger.transfers_down = False
    assert await world.recover() == 1
    done = await world.payments.get(SERVICE, pending.id)
    assert done.status is PaymentStatus.COMPLETED
    assert done.history[-1].actor == RECOVERY_ACTOR
    replay = await world.payments.create(SERVICE, world.request())
    assert replay.status is PaymentStatus.COMPLETED


async def test_after_an_outage_recovery_finishes_many_payments_a_few_at_a_time(
    world: World,
) -> None:
    """Twenty payments left PENDING are finished in one pass, never more than the bound at once."""
    world.ledger.transfers_down = True
    pending = [
        await world.payments.create(SERVICE, world.request(100, key=f"k-{n}")) for n in range(20)
    ]
    assert {p.status for p in pending} == {PaymentStatus.PENDING}
    world.ledger.transfers_down = False
    world.ledger.delay = 0.01
    assert await world.recover() == 20
    assert 1 < world.ledger.most_in_flight <= RECOVERY_CONCURRENCY
    for p in pending:
        assert (await world.payments.get(SERVICE, p.id)).status is PaymentStatus.COMPLETED
    assert world.ledger.posted[world.bob] == 2_000


async def test_a_ledger_down_before_anything_was_written_leaves_no_trace(world: World) -> None:
    """The source account could not be checked: UNAVAILABLE, and the key stays free."""
    world.ledger.down = True
    with pytest.raises(DependencyUnavailable):
        await world.payments.create(SERVICE, world.request(1_000))
    assert world.store.payments == {} and world.store.keys == {}
    world.ledger.down = False
    p = await world.payments.create(SERVICE, world.request(2_000))
    assert (p.status, p.amount) == (PaymentStatus.COMPLETED, 2_000)


async def test_risk_down_means_a_hold_never_a_posting(world: World) -> None:
    """Unscored money is held for review (RISK_UNAVAILABLE), not posted."""
    world.risk.down = True
    p = await world.payments.create(SERVICE, world.request(2_500))
    assert p.status is PaymentStatus.IN_REVIEW
    assert p.history[-1].reason == "RISK_UNAVAILABLE"
    assert world.ledger.kinds() == ["PENDING"]
    assert world.ledger.available[world.alice] == 7_500
    assert world.ledger.posted[world.bob] == 0


# -- crashes between steps --------------------------------------------------------------------


@pytest.mark.parametrize("step", ["after_persist", "after_transfer"])
async def test_a_crash_at_any_step_ends_in_one_completed_payment(world: World, step: str) -> None:
    """Killed mid-way, the payment is finished by recovery with exactly one transfer."""
    crashing = world.build(crash_at=step)
    with pytest.raises(Crash):
        await crashing.create(SERVICE, world.request(1_000))
    assert await world.recover() == 1
    p = await world.payments.create(SERVICE, world.request(1_000))
    assert p.status is PaymentStatus.COMPLETED
    assert world.ledger.kinds() == ["SINGLE_PHASE"]
    assert world.ledger.posted[world.alice] == 9_000


async def test_a_crash_before_the_payment_was_stored_leaves_it_to_the_clients_retry(
    world: World,
) -> None:
    """Risk answered, nothing was stored: nothing to recover, and the retry makes it once."""
    with pytest.raises(Crash):
        await world.build(crash_at="after_risk").create(SERVICE, world.request(1_000))
    assert await world.recover() == 0
    assert world.ledger.kinds() == []
    p = await world.payments.create(SERVICE, world.request(1_000))
    assert p.status is PaymentStatus.COMPLETED
    assert world.ledger.kinds() == ["SINGLE_PHASE"]
    assert set(world.risk.calls) == {p.id}  # asked again for the same payment id


async def test_a_payment_routed_to_review_stays_on_that_route_after_a_crash(world: World) -> None:
    """Risk was down, the hold was placed, then a crash: resuming never adds a posting,
    even though risk would now approve."""
    world.risk.down = True
    with pytest.raises(Crash):
        await world.build(crash_at="after_transfer").create(SERVICE, world.request(1_000))
    world.risk.down = False
    await world.recover()
    p = await world.payments.create(SERVICE, world.request(1_000))
    assert p.status is PaymentStatus.IN_REVIEW
    assert p.route is Route.HOLD
    assert world.ledger.kinds() == ["PENDING"]


async def test_a_refusal_the_ledger_remembers_fails_the_payment_after_a_crash(
    world: World,
) -> None:
    """The ledger refused, then a crash: the resend answers ID_ALREADY_FAILED, no money moved."""
    with pytest.raises(Crash):
        await world.build(crash_at="after_transfer").create(SERVICE, world.request(50_000))
    await world.recover()
    p = await world.payments.create(SERVICE, world.request(50_000))
    assert (p.status, p.failure_reason) == (PaymentStatus.FAILED, "ID_ALREADY_FAILED")
    assert world.ledger.posted[world.alice] == 10_000


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_requests_with_one_key_execute_once(world: World) -> None:
    """Fifty racing creates with one key: one risk call, one transfer, one answer for all."""
    results = await asyncio.gather(
        *(world.payments.create(SERVICE, world.request(1_000)) for _ in range(50))
    )
    assert {p.id for p in results} == {results[0].id}
    assert {p.status for p in results} == {PaymentStatus.COMPLETED}
    assert len(world.risk.calls) == 1
    assert world.ledger.kinds() == ["SINGLE_PHASE"]


async def test_a_request_that_cannot_wait_for_the_first_is_told_the_key_is_in_use(
    world: World,
) -> None:
    """While the first holds the payment, a caller with no time left gets IDEMPOTENCY_KEY_IN_USE."""
    payment_id = ids.payment_id(SERVICE.scope, "k-1")
    async with world.locks.hold(payment_id, 1.0):
        with deadlines.within(0.15), pytest.raises(IdempotencyKeyInUse):
            await world.payments.create(SERVICE, world.request())
    assert world.ledger.sent == []


# -- access ------------------------------------------------------------------------------------


async def test_a_customer_pays_only_from_their_own_accounts(world: World) -> None:
    """Paying from someone else's account looks exactly like paying from a missing one."""
    with pytest.raises(AccountNotFound) as theirs:
        await world.payments.create(customer("bob"), world.request())
    with pytest.raises(AccountNotFound) as missing:
        await world.payments.create(customer("bob"), world.request(source_account_id=uuid.uuid4()))
    assert str(theirs.value).split()[0] == str(missing.value).split()[0] == "account"
    assert world.ledger.sent == []


async def test_a_customer_sees_payments_touching_their_accounts_and_nothing_else(
    world: World,
) -> None:
    """Payer and payee see it; a third customer gets PAYMENT_NOT_FOUND."""
    p = await world.payments.create(customer("alice"), world.request())
    assert (await world.payments.get(customer("alice"), p.id)).id == p.id
    assert (await world.payments.get(customer("bob"), p.id)).id == p.id
    with pytest.raises(PaymentNotFound):
        await world.payments.get(customer("carol"), p.id)


async def test_only_the_payee_can_refund(world: World) -> None:
    """The payer asking for their money back is refused; the payee may return it."""
    p = await world.payments.create(customer("alice"), world.request(1_000))
    with pytest.raises(PermissionDenied):
        await world.payments.refund(customer("alice"), RefundRequest(p.id, "r-1"))
    refunded = await world.payments.refund(customer("bob"), RefundRequest(p.id, "r-1"))
    assert refunded.status is PaymentStatus.REFUNDED
    assert world.ledger.posted[world.alice] == 10_000


# -- review ---------------------------------------------------------------------------------------


async def in_review(world: World, amount: int = 1_000) -> uuid.UUID:
    world.risk.decide(amount, RiskOutcome.REVIEW, "AMOUNT_UNUSUAL")
    p = await world.payments.create(SERVICE, world.request(amount, key=f"k-{amount}"))
    assert p.status is PaymentStatus.IN_REVIEW
    return p.id


async def test_approving_posts_the_hold_and_rejecting_releases_it(world: World) -> None:
    """Approve: COMPLETED by the reviewer; reject: REJECTED, the payer's money free again."""
    approved = await world.payments.approve(REVIEWER, await in_review(world, 1_000), "ok")
    assert approved.status is PaymentStatus.COMPLETED
    assert (approved.history[-1].reason, approved.history[-1].actor) == ("REVIEW_APPROVED", "rev-1")
    rejected = await world.payments.reject(REVIEWER, await in_review(world, 2_000), "no")
    assert rejected.status is PaymentStatus.REJECTED
    assert world.ledger.posted[world.bob] == 1_000
    assert world.ledger.available[world.alice] == 9_000


async def test_approving_after_the_hold_expired_ends_expired(world: World) -> None:
    """The ledger let the hold lapse: the approval finds EXPIRED, no money moves."""
    payment_id = await in_review(world)
    world.ledger.expire(ids.transfer_id(payment_id, ids.HOLD))
    p = await world.payments.approve(REVIEWER, payment_id)
    assert p.status is PaymentStatus.EXPIRED
    assert world.ledger.posted[world.bob] == 0


async def test_a_hold_that_cannot_be_posted_is_released_and_the_payment_fails(
    world: World,
) -> None:
    """The payee's account was frozen during review: the hold is voided, FAILED, ACCOUNT_FROZEN."""
    payment_id = await in_review(world)
    world.ledger.frozen.add(world.bob)
    p = await world.payments.approve(REVIEWER, payment_id)
    assert (p.status, p.failure_reason) == (PaymentStatus.FAILED, "ACCOUNT_FROZEN")
    hold = world.ledger.transfers[ids.transfer_id(payment_id, ids.HOLD)][1]
    assert hold.pending_state is HoldState.VOIDED
    assert world.ledger.available[world.alice] == 10_000


async def test_recovery_notices_holds_the_ledger_expired(world: World) -> None:
    """Nobody decided in time: once the hold's expiry passes, recovery marks it EXPIRED."""
    payment_id = await in_review(world)
    world.clock.advance(3_601)
    world.ledger.expire(ids.transfer_id(payment_id, ids.HOLD))
    await world.recover()
    assert (await world.payments.get(SERVICE, payment_id)).status is PaymentStatus.EXPIRED


async def test_a_review_decision_survives_a_crash_and_is_carried_out(world: World) -> None:
    """Killed after the decision was written: recovery posts the hold, once."""
    payment_id = await in_review(world)
    with pytest.raises(Crash):
        await world.build(crash_at="after_review_decision").approve(REVIEWER, payment_id)
    await world.recover()
    p = await world.payments.get(SERVICE, payment_id)
    assert p.status is PaymentStatus.COMPLETED
    assert world.ledger.kinds() == ["PENDING", "POST_PENDING"]
    with pytest.raises(PaymentNotInReview):
        await world.payments.reject(REVIEWER, payment_id)


# -- refunds -----------------------------------------------------------------------------------------


async def test_a_refund_the_ledger_refuses_is_answered_the_same_way_again(world: World) -> None:
    """The payee spent the money: INSUFFICIENT_FUNDS, and replaying the key says so again."""
    p = await world.payments.create(SERVICE, world.request(1_000))
    world.ledger.available[world.bob] = 0
    for _ in range(2):
        with pytest.raises(LedgerRefused) as refused:
            await world.payments.refund(SERVICE, RefundRequest(p.id, "r-1", 500, "EUR"))
        assert refused.value.reason == "INSUFFICIENT_FUNDS"
    assert (await world.payments.get(SERVICE, p.id)).refundable == 1_000


async def test_a_refund_interrupted_by_a_crash_is_finished_by_recovery(world: World) -> None:
    """Killed after the refund was written: recovery returns the money, once."""
    p = await world.payments.create(SERVICE, world.request(1_000))
    with pytest.raises(Crash):
        await world.build(crash_at="after_refund_persist").refund(
            SERVICE, RefundRequest(p.id, "r-1", 400, "EUR")
        )
    await world.recover()
    refunded = await world.payments.refund(SERVICE, RefundRequest(p.id, "r-1", 400, "EUR"))
    assert (refunded.status, refunded.refunded_amount) == (PaymentStatus.PARTIALLY_REFUNDED, 400)
    assert world.ledger.kinds() == ["SINGLE_PHASE", "SINGLE_PHASE"]
    assert world.ledger.posted[world.alice] == 9_400
