"""A payment's way through risk and the ledger, over real gRPC on every hop.

Each test drives CreatePayment on the payment service, which asks a scripted
risk server and the real account service; what the customer sees is then
checked in the ledger itself: balances, and how many transfers were booked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bankmesh.common.v1 import money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc
from bankmesh.risk.v1 import risk_service_pb2 as risk_pb
from services.payment.app import SERVICE_NAME, build_payment_server
from services.payment.service_layer.payments import Payments

from .conftest import Bank, ScriptedRisk, new_key, refusal

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration


def eur(minor_units: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor_units, currency_code="EUR")


def create(source: str, destination: str, amount: int, key: str = "") -> svc.CreatePaymentRequest:
    return svc.CreatePaymentRequest(
        idempotency_key=key or new_key(),
        source_account_id=source,
        destination_account_id=destination,
        amount=eur(amount),
        reference="invoice 42",
    )


async def test_an_approved_payment_moves_the_money_once(stub: Stub, bank: Bank) -> None:
    """Risk approves: one ledger transfer, COMPLETED, and both balances show it."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    response = await stub.CreatePayment(create(alice, bob, 2_550))

    payment = response.payment
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.risk_outcome == pb.RISK_OUTCOME_APPROVE
    assert (await bank.posted(alice), await bank.posted(bob)) == (7_450, 2_550)
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert [(h.from_status, h.to_status) for h in payment.history] == [
        (pb.PAYMENT_STATUS_UNSPECIFIED, pb.PAYMENT_STATUS_PENDING),
        (pb.PAYMENT_STATUS_PENDING, pb.PAYMENT_STATUS_COMPLETED),
    ]
    assert [h.reason for h in payment.history] == ["CREATED", "RISK_APPROVED"]
    assert await bank.books_balance()


async def test_a_declined_payment_moves_nothing_and_says_why(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Risk declines: DECLINED with risk's reason codes, no ledger transfer at all."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.decide(9_999, risk_pb.DECISION_DECLINE, "VELOCITY_COUNT", "NEW_DEVICE")
    payment = (await stub.CreatePayment(create(alice, bob, 9_999))).payment

    assert payment.status == pb.PAYMENT_STATUS_DECLINED
    assert list(payment.risk_reasons) == ["VELOCITY_COUNT", "NEW_DEVICE"]
    assert payment.history[-1].reason == "PAYMENT_DECLINED"
    assert await bank.transfers_between(alice, bob) == []
    assert await bank.posted(alice) == 10_000


async def test_a_payment_the_ledger_refuses_fails_with_the_ledgers_reason(
    stub: Stub, bank: Bank
) -> None:
    """Not enough money: FAILED with INSUFFICIENT_FUNDS, and nothing moved."""
    alice, bob = await bank.customer("alice", funds=100), await bank.customer("bob")
    payment = (await stub.CreatePayment(create(alice, bob, 500))).payment

    assert payment.status == pb.PAYMENT_STATUS_FAILED
    assert payment.failure_reason == "INSUFFICIENT_FUNDS"
    assert payment.history[-1].reason == "INSUFFICIENT_FUNDS"
    assert (await bank.posted(alice), await bank.posted(bob)) == (100, 0)


async def test_a_payment_risk_wants_reviewed_is_held_not_paid(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Risk says REVIEW: IN_REVIEW, the amount held on the payer's account, nothing posted."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.decide(3_000, risk_pb.DECISION_REVIEW, "AMOUNT_UNUSUAL")
    payment = (await stub.CreatePayment(create(alice, bob, 3_000))).payment

    assert payment.status == pb.PAYMENT_STATUS_IN_REVIEW
    assert payment.history[-1].reason == "RISK_REVIEW"
    assert await bank.transfers_between(alice, bob) == ["PENDING"]
    assert (await bank.posted(alice), await bank.available(alice)) == (10_000, 7_000)
    assert await bank.posted(bob) == 0


async def test_when_risk_is_down_the_payment_is_held_for_review(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """Unscored money is never posted: IN_REVIEW with RISK_UNAVAILABLE and a hold."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.down = True
    payment = (await stub.CreatePayment(create(alice, bob, 1_234))).payment

    assert payment.status == pb.PAYMENT_STATUS_IN_REVIEW
    assert payment.risk_outcome == pb.RISK_OUTCOME_UNSPECIFIED
    assert payment.history[-1].reason == "RISK_UNAVAILABLE"
    assert await bank.transfers_between(alice, bob) == ["PENDING"]
    assert await bank.available(alice) == 10_000 - 1_234


async def test_when_risk_is_too_slow_the_payment_is_held_within_the_callers_deadline(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """A risk answer that would miss the caller's deadline is not waited for: IN_REVIEW."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.delay = 5.0
    payment = (await stub.CreatePayment(create(alice, bob, 700), timeout=1.5)).payment

    assert payment.status == pb.PAYMENT_STATUS_IN_REVIEW
    assert payment.history[-1].reason == "RISK_UNAVAILABLE"
    assert await bank.transfers_between(alice, bob) == ["PENDING"]


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        (lambda r: setattr(r, "idempotency_key", ""), "INVALID_ARGUMENT", "idempotency_key"),
        (lambda r: setattr(r, "idempotency_key", "x" * 256), "INVALID_ARGUMENT", "idempotency_key"),
        (
            lambda r: setattr(r, "idempotency_key", "tab\there"),
            "INVALID_ARGUMENT",
            "idempotency_key",
        ),
        (lambda r: r.amount.CopyFrom(eur(0)), "INVALID_AMOUNT", "amount.minor_units"),
        (lambda r: r.amount.CopyFrom(eur(-1)), "INVALID_AMOUNT", "amount.minor_units"),
        (lambda r: r.ClearField("amount"), "INVALID_AMOUNT", "amount.minor_units"),
        (
            lambda r: setattr(r.amount, "currency_code", "EURO"),
            "INVALID_CURRENCY",
            "amount.currency_code",
        ),
        (
            lambda r: setattr(r, "destination_account_id", r.source_account_id),
            "ACCOUNTS_MUST_BE_DIFFERENT",
            "destination_account_id",
        ),
        (lambda r: setattr(r, "reference", "r" * 141), "INVALID_ARGUMENT", "reference"),
        (lambda r: setattr(r, "source_account_id", "nope"), "INVALID_ID", "source_account_id"),
    ],
    ids=[
        "no key",
        "key too long",
        "unprintable key",
        "zero amount",
        "negative amount",
        "no amount",
        "unknown currency",
        "same account",
        "long reference",
        "malformed account id",
    ],
)
async def test_malformed_payments_are_refused_before_anything_happens(
    stub: Stub, bank: Bank, risk: ScriptedRisk, change: object, reason: str, field: str
) -> None:
    """Each malformed request gets INVALID_ARGUMENT with its own reason; risk is not asked."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    request = create(alice, bob, 100)
    change(request)  # type: ignore[operator]
    code, got_reason, metadata = await refusal(stub.CreatePayment(request))
    assert (code, got_reason, metadata.get("field")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        field,
    )
    assert risk.calls == []
    assert await bank.posted(alice) == 1_000


async def test_a_payment_from_an_unknown_account_is_not_found(stub: Stub, bank: Bank) -> None:
    """The source must exist in the ledger: NOT_FOUND / ACCOUNT_NOT_FOUND, no payment made."""
    bob = await bank.customer("bob")
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    code, reason, metadata = await refusal(stub.CreatePayment(create(missing, bob, 100)))
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
        "source_account_id",
    )


async def test_a_payment_reads_back_as_it_was_answered(stub: Stub, bank: Bank) -> None:
    """GetPayment returns the same payment CreatePayment answered with."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    created = (await stub.CreatePayment(create(alice, bob, 250))).payment
    fetched = (await stub.GetPayment(svc.GetPaymentRequest(payment_id=created.payment_id))).payment
    assert fetched == created


async def test_payments_of_an_account_page_newest_first(stub: Stub, bank: Bank) -> None:
    """ListPayments walks an account's payments (sent and received) newest first, once each."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    made = []
    for amount in (101, 102, 103):
        made.append((await stub.CreatePayment(create(alice, bob, amount))).payment.payment_id)
    made.append((await stub.CreatePayment(create(bob, alice, 50))).payment.payment_id)

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListPayments(
            svc.ListPaymentsRequest(account_id=alice, page={"page_size": 3, "page_token": token})
        )
        seen += [p.payment_id for p in page.payments]
        token = page.page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))


async def test_a_forged_page_token_is_refused(stub: Stub, bank: Bank) -> None:
    """A page token the server never issued gets INVALID_PAGE_TOKEN."""
    alice = await bank.customer("alice")
    code, reason, _ = await refusal(
        stub.ListPayments(
            svc.ListPaymentsRequest(account_id=alice, page={"page_token": "garbage!!"})
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


async def test_health_is_served_by_the_real_server(payments: Payments) -> None:
    """Operators can probe the payment service with the standard health check."""
    server, port, health = build_payment_server(payments)
    await server.start()
    try:
        await health.set_serving(True)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            )
    finally:
        await server.stop(grace=None)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
