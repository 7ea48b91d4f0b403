"""Reviews (approve, reject, expiry) and refunds, against the real ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.common.v1 import money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc
from bankmesh.risk.v1 import risk_service_pb2 as risk_pb
from services.account.service_layer.ledger import Ledger
from services.payment.adapters.unit_of_work import SqlUnitOfWork
from services.payment.service_layer.payments import DEFAULT_REVIEW_TIMEOUT_SECONDS, Payments
from services.payment.service_layer.recovery import Recovery
from tests.support.clock import SteppingClock

from .conftest import Bank, ScriptedRisk, as_user, new_key, refusal

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

REVIEWER = as_user("rev-1", roles=("reviewer",))


def eur(minor_units: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor_units, currency_code="EUR")


async def pay(stub: Stub, source: str, destination: str, amount: int) -> pb.Payment:
    response = await stub.CreatePayment(
        svc.CreatePaymentRequest(
            idempotency_key=new_key(),
            source_account_id=source,
            destination_account_id=destination,
            amount=eur(amount),
        )
    )
    return response.payment


async def held(
    stub: Stub, bank: Bank, risk: ScriptedRisk, amount: int = 4_000
) -> tuple[str, str, str]:
    """A payment risk sent to review: (payer, payee, payment id)."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.decide(amount, risk_pb.DECISION_REVIEW, "AMOUNT_UNUSUAL")
    payment = await pay(stub, alice, bob, amount)
    assert payment.status == pb.PAYMENT_STATUS_IN_REVIEW
    return alice, bob, payment.payment_id


# -- review ---------------------------------------------------------------------------------------


async def test_a_reviewer_approving_posts_the_held_money(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Approve: the hold is posted (not a second transfer), COMPLETED by the reviewer."""
    alice, bob, payment_id = await held(stub, bank, risk)
    approved = await stub.ApprovePayment(
        svc.ApprovePaymentRequest(payment_id=payment_id, note="called the customer"),
        metadata=REVIEWER,
    )
    assert approved.payment.status == pb.PAYMENT_STATUS_COMPLETED
    change = approved.payment.history[-1]
    assert (change.reason, change.actor) == ("REVIEW_APPROVED", "rev-1")
    assert await bank.transfers_between(alice, bob) == ["PENDING", "POST_PENDING"]
    assert (await bank.posted(alice), await bank.posted(bob)) == (6_000, 4_000)
    assert await bank.books_balance()


async def test_a_reviewer_rejecting_releases_the_hold(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Reject: the hold is voided, REJECTED, and the payer can spend the money again."""
    alice, bob, payment_id = await held(stub, bank, risk)
    assert await bank.available(alice) == 6_000
    rejected = await stub.RejectPayment(
        svc.RejectPaymentRequest(payment_id=payment_id, note="mule account"), metadata=REVIEWER
    )
    assert rejected.payment.status == pb.PAYMENT_STATUS_REJECTED
    assert await bank.transfers_between(alice, bob) == ["PENDING", "VOID_PENDING"]
    assert (await bank.available(alice), await bank.posted(bob)) == (10_000, 0)


async def test_a_payment_held_because_risk_was_down_can_be_approved(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """The risk-down policy's hold is an ordinary review: a reviewer can let it through."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    risk.down = True
    payment = await pay(stub, alice, bob, 600)
    assert payment.history[-1].reason == "RISK_UNAVAILABLE"
    approved = await stub.ApprovePayment(
        svc.ApprovePaymentRequest(payment_id=payment.payment_id), metadata=REVIEWER
    )
    assert approved.payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert await bank.posted(bob) == 600


async def test_only_reviewers_may_decide_and_only_payments_in_review(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """A customer approving is PERMISSION_DENIED; approving a completed payment is
    PAYMENT_NOT_IN_REVIEW; neither moves money."""
    alice, bob, payment_id = await held(stub, bank, risk)
    code, reason, _ = await refusal(
        stub.ApprovePayment(
            svc.ApprovePaymentRequest(payment_id=payment_id), metadata=as_user("u-a", "alice")
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")

    completed = await pay(stub, alice, bob, 100)
    code, reason, _ = await refusal(
        stub.RejectPayment(
            svc.RejectPaymentRequest(payment_id=completed.payment_id), metadata=REVIEWER
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_IN_REVIEW")
    assert await bank.posted(bob) == 100


async def test_approving_after_the_hold_expired_ends_expired_and_moves_nothing(
    stub: Stub, bank: Bank, risk: ScriptedRisk, clock: SteppingClock
) -> None:
    """Nobody decided within the review timeout: the ledger released the hold, the payment
    is EXPIRED, and a late approval cannot post it."""
    alice, bob, payment_id = await held(stub, bank, risk)
    clock.advance(DEFAULT_REVIEW_TIMEOUT_SECONDS + 1)
    late = await stub.ApprovePayment(
        svc.ApprovePaymentRequest(payment_id=payment_id), metadata=REVIEWER
    )
    assert late.payment.status == pb.PAYMENT_STATUS_EXPIRED
    assert late.payment.history[-1].reason == "HOLD_EXPIRED"
    assert (await bank.available(alice), await bank.posted(bob)) == (10_000, 0)


async def test_recovery_marks_payments_whose_hold_the_ledger_expired(
    stub: Stub,
    bank: Bank,
    risk: ScriptedRisk,
    clock: SteppingClock,
    ledger: Ledger,
    payments: Payments,
    payment_engine: AsyncEngine,
) -> None:
    """After the ledger's sweeper releases an overdue hold, the recovery loop notices: EXPIRED."""
    _, _, payment_id = await held(stub, bank, risk)
    clock.advance(DEFAULT_REVIEW_TIMEOUT_SECONDS + 1)
    await ledger.expire_due_holds()
    recovery = Recovery(payments, lambda: SqlUnitOfWork(payment_engine), clock)
    await recovery.run_once()
    payment = (await stub.GetPayment(svc.GetPaymentRequest(payment_id=payment_id))).payment
    assert payment.status == pb.PAYMENT_STATUS_EXPIRED
    assert payment.history[-1].actor == "payment-recovery"


# -- refunds ------------------------------------------------------------------------------------


async def refund(
    stub: Stub, payment_id: str, amount: int | None = None, key: str = ""
) -> svc.RefundPaymentResponse:
    request = svc.RefundPaymentRequest(
        payment_id=payment_id, idempotency_key=key or new_key(), reason="returned goods"
    )
    if amount is not None:
        request.amount.CopyFrom(eur(amount))
    return await stub.RefundPayment(request)


async def test_a_partial_then_a_full_refund_return_exactly_what_was_paid(
    stub: Stub, bank: Bank
) -> None:
    """3,000 of 10,000 back, then the rest: REFUNDED, both balances where they started."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    payment = await pay(stub, alice, bob, 10_000)

    partial = (await refund(stub, payment.payment_id, 3_000)).payment
    assert partial.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert partial.refunded_amount.minor_units == 3_000
    assert (await bank.posted(alice), await bank.posted(bob)) == (3_000, 7_000)

    full = (await refund(stub, payment.payment_id)).payment
    assert full.status == pb.PAYMENT_STATUS_REFUNDED
    assert [r.amount.minor_units for r in full.refunds] == [3_000, 7_000]
    assert (await bank.posted(alice), await bank.posted(bob)) == (10_000, 0)
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"] * 3
    assert await bank.books_balance()


async def test_refunding_more_than_was_paid_is_refused(stub: Stub, bank: Bank) -> None:
    """Never more than was paid: REFUND_EXCEEDS_PAYMENT, before and after a partial refund."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = await pay(stub, alice, bob, 1_000)
    code, reason, _ = await refusal(refund(stub, payment.payment_id, 1_001))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REFUND_EXCEEDS_PAYMENT")
    await refund(stub, payment.payment_id, 600)
    code, reason, _ = await refusal(refund(stub, payment.payment_id, 401))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REFUND_EXCEEDS_PAYMENT")
    assert await bank.posted(alice) == 600


async def test_a_payment_that_moved_no_money_cannot_be_refunded(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Refunding a DECLINED payment is PAYMENT_NOT_REFUNDABLE."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    risk.decide(500, risk_pb.DECISION_DECLINE, "DENY_LIST")
    declined = await pay(stub, alice, bob, 500)
    code, reason, _ = await refusal(refund(stub, declined.payment_id))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_NOT_REFUNDABLE")


async def test_a_refund_retried_with_its_key_returns_money_once(stub: Stub, bank: Bank) -> None:
    """The same refund request twice: the same answer, one refund transfer."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = await pay(stub, alice, bob, 1_000)
    key = new_key()
    first = await refund(stub, payment.payment_id, 250, key)
    again = await refund(stub, payment.payment_id, 250, key)
    assert again == first
    assert await bank.posted(alice) == 250
    code, reason, _ = await refusal(refund(stub, payment.payment_id, 300, key))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")


async def test_a_refund_the_payee_cannot_cover_is_refused_with_the_ledgers_reason(
    stub: Stub, bank: Bank
) -> None:
    """The payee already spent the money: INSUFFICIENT_FUNDS, and the payment stays COMPLETED."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    carol = await bank.customer("carol")
    payment = await pay(stub, alice, bob, 1_000)
    await pay(stub, bob, carol, 1_000)
    code, reason, _ = await refusal(refund(stub, payment.payment_id))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    after = (await stub.GetPayment(svc.GetPaymentRequest(payment_id=payment.payment_id))).payment
    assert after.status == pb.PAYMENT_STATUS_COMPLETED
    assert after.refunded_amount.minor_units == 0
