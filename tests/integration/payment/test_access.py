"""Object-level access: a customer acts on, and sees, only what touches their own accounts.

Calls are made as an end user through the test interceptor (`as_user`); the
account service is asked who owns which account. Someone else's object looks
exactly like one that does not exist.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest

from bankmesh.common.v1 import money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc

from .conftest import Bank, as_user, new_key, refusal

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

ALICE = as_user("user-alice", "alice")
BOB = as_user("user-bob", "bob")
MALLORY = as_user("user-mallory", "mallory")


def create(source: str, destination: str, amount: int = 100) -> svc.CreatePaymentRequest:
    return svc.CreatePaymentRequest(
        idempotency_key=new_key(),
        source_account_id=source,
        destination_account_id=destination,
        amount=money_pb2.Money(minor_units=amount, currency_code="EUR"),
    )


async def test_a_customer_cannot_pay_from_someone_elses_account(stub: Stub, bank: Bank) -> None:
    """Mallory paying from Alice's account gets the same NOT_FOUND as for a made-up account."""
    alice = await bank.customer("alice", funds=1_000)
    mallory = await bank.customer("mallory")
    theirs = await refusal(stub.CreatePayment(create(alice, mallory), metadata=MALLORY))
    made_up = await refusal(
        stub.CreatePayment(create(str(uuid.uuid4()), mallory), metadata=MALLORY)
    )
    assert theirs[:2] == made_up[:2] == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    assert await bank.posted(alice) == 1_000


async def test_a_customer_pays_from_their_own_account(stub: Stub, bank: Bank) -> None:
    """Alice paying Bob from her own account works and is recorded as done by her."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = (await stub.CreatePayment(create(alice, bob), metadata=ALICE)).payment
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.history[0].actor == "user-alice"


async def test_payer_and_payee_see_a_payment_and_nobody_else_does(stub: Stub, bank: Bank) -> None:
    """Alice and Bob can read Alice's payment to Bob; for Mallory it does not exist."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = (await stub.CreatePayment(create(alice, bob), metadata=ALICE)).payment
    get = svc.GetPaymentRequest(payment_id=payment.payment_id)

    assert (await stub.GetPayment(get, metadata=ALICE)).payment.payment_id == payment.payment_id
    assert (await stub.GetPayment(get, metadata=BOB)).payment.payment_id == payment.payment_id
    hidden = await refusal(stub.GetPayment(get, metadata=MALLORY))
    missing = await refusal(
        stub.GetPayment(svc.GetPaymentRequest(payment_id=str(uuid.uuid4())), metadata=MALLORY)
    )
    assert hidden[:2] == missing[:2] == (grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND")


async def test_a_customer_lists_only_their_own_accounts_payments(stub: Stub, bank: Bank) -> None:
    """Listing Alice's account works for Alice and is ACCOUNT_NOT_FOUND for Mallory."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    await stub.CreatePayment(create(alice, bob), metadata=ALICE)
    listing = svc.ListPaymentsRequest(account_id=alice)

    mine = await stub.ListPayments(listing, metadata=ALICE)
    assert len(mine.payments) == 1
    code, reason, _ = await refusal(stub.ListPayments(listing, metadata=MALLORY))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


async def test_staff_read_by_role_and_a_user_without_one_reads_nothing(
    stub: Stub, bank: Bank
) -> None:
    """Support staff may read any payment; an end user with no role is PERMISSION_DENIED."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = (await stub.CreatePayment(create(alice, bob), metadata=ALICE)).payment
    get = svc.GetPaymentRequest(payment_id=payment.payment_id)
    support = await stub.GetPayment(get, metadata=as_user("agent-1", roles=("support",)))
    assert support.payment.payment_id == payment.payment_id
    code, reason, _ = await refusal(stub.GetPayment(get, metadata=as_user("nobody", roles=())))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_only_the_payee_may_refund_and_strangers_cannot_tell_it_exists(
    stub: Stub, bank: Bank
) -> None:
    """Alice cannot take her money back herself; Mallory gets NOT_FOUND; Bob may refund."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    payment = (await stub.CreatePayment(create(alice, bob, 400), metadata=ALICE)).payment

    def ask() -> svc.RefundPaymentRequest:
        return svc.RefundPaymentRequest(payment_id=payment.payment_id, idempotency_key=new_key())

    code, reason, _ = await refusal(stub.RefundPayment(ask(), metadata=ALICE))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    code, reason, _ = await refusal(stub.RefundPayment(ask(), metadata=MALLORY))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND")
    refunded = (await stub.RefundPayment(ask(), metadata=BOB)).payment
    assert refunded.status == pb.PAYMENT_STATUS_REFUNDED
    assert await bank.posted(alice) == 1_000
