"""Idempotency keys over real gRPC and PostgreSQL: replays, reuse, and a storm on one key."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.common.v1 import money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc
from bankmesh.payment.v1 import payment_service_pb2_grpc
from services.payment.adapters.locks import AdvisoryLocks
from services.payment.domain import ids
from tests.support.clock import SteppingClock

from .conftest import (
    Bank,
    ScriptedRisk,
    as_user,
    make_payments,
    new_key,
    refusal,
    start_payment_server,
)

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

STORM = 200


def create(source: str, destination: str, amount: int, key: str) -> svc.CreatePaymentRequest:
    return svc.CreatePaymentRequest(
        idempotency_key=key,
        source_account_id=source,
        destination_account_id=destination,
        amount=money_pb2.Money(minor_units=amount, currency_code="EUR"),
    )


async def test_the_same_request_again_is_answered_from_the_first_time(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """A retry with the key gets the identical payment; risk and the ledger are not asked again."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    key = new_key()
    first = (await stub.CreatePayment(create(alice, bob, 300, key))).payment
    again = (await stub.CreatePayment(create(alice, bob, 300, key))).payment

    assert again == first
    assert len(risk.calls) == 1
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert await bank.posted(alice) == 700


async def test_a_key_used_with_other_parameters_is_refused(stub: Stub, bank: Bank) -> None:
    """Same key, other amount: FAILED_PRECONDITION / IDEMPOTENCY_KEY_REUSED, nothing moves."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    key = new_key()
    await stub.CreatePayment(create(alice, bob, 300, key))
    code, reason, metadata = await refusal(stub.CreatePayment(create(alice, bob, 301, key)))

    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDEMPOTENCY_KEY_REUSED",
        "idempotency_key",
    )
    assert await bank.posted(alice) == 700


async def test_a_refused_request_does_not_use_up_its_key(stub: Stub, bank: Bank) -> None:
    """A request refused before it started (unknown account) may be fixed and resent with its key."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    key = new_key()
    code, reason, _ = await refusal(stub.CreatePayment(create(str(uuid.uuid4()), bob, 300, key)))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    fixed = (await stub.CreatePayment(create(alice, bob, 300, key))).payment
    assert fixed.status == pb.PAYMENT_STATUS_COMPLETED


async def test_two_customers_may_choose_the_same_key(stub: Stub, bank: Bank) -> None:
    """Keys are per caller: the same key from two customers makes two payments."""
    alice = await bank.customer("alice", funds=1_000)
    bob = await bank.customer("bob", funds=1_000)
    shop = await bank.customer("shop")
    a = await stub.CreatePayment(
        create(alice, shop, 100, "order-1"), metadata=as_user("u-a", "alice")
    )
    b = await stub.CreatePayment(create(bob, shop, 100, "order-1"), metadata=as_user("u-b", "bob"))
    assert a.payment.payment_id != b.payment.payment_id
    assert await bank.posted(shop) == 200


async def test_a_storm_on_one_key_makes_one_payment_and_one_transfer(
    stub: Stub, bank: Bank, risk: ScriptedRisk
) -> None:
    """200 concurrent CreatePayment with one key: one execution, every caller the same answer."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    key = new_key()
    started = time.monotonic()
    answers = await asyncio.gather(
        *(stub.CreatePayment(create(alice, bob, 1_000, key), timeout=20) for _ in range(STORM))
    )
    elapsed = time.monotonic() - started

    assert len({a.payment.payment_id for a in answers}) == 1
    assert {a.payment.status for a in answers} == {pb.PAYMENT_STATUS_COMPLETED}
    assert all(a.payment == answers[0].payment for a in answers)
    assert len(risk.calls) == 1
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert await bank.entries_of(alice) == 2  # the funding, and this payment
    assert (await bank.posted(alice), await bank.posted(bob)) == (9_000, 1_000)
    assert await bank.books_balance()
    print(f"\n{STORM} concurrent CreatePayment with one key answered in {elapsed:.2f}s")


async def test_a_storm_across_two_replicas_still_makes_one_payment(
    payment_engine: AsyncEngine,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    clock: SteppingClock,
    bank: Bank,
    risk: ScriptedRisk,
) -> None:
    """Two payment servers on one database share nothing in memory; the database lock
    still lets exactly one of them execute the key."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    servers = [
        await start_payment_server(make_payments(payment_engine, *channels, clock))
        for _ in range(2)
    ]
    key = new_key()
    try:
        async with (
            grpc.aio.insecure_channel(servers[0].address) as one,
            grpc.aio.insecure_channel(servers[1].address) as two,
        ):
            stubs = [payment_service_pb2_grpc.PaymentServiceStub(c) for c in (one, two)]
            answers = await asyncio.gather(
                *(
                    stubs[i % 2].CreatePayment(create(alice, bob, 1_000, key), timeout=20)
                    for i in range(100)
                )
            )
    finally:
        for server in servers:
            await server.server.stop(grace=None)

    assert len({a.payment.payment_id for a in answers}) == 1
    assert len(risk.calls) == 1
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert await bank.posted(alice) == 9_000


async def test_a_request_that_cannot_outwait_the_first_is_told_the_key_is_in_use(
    stub: Stub, payment_engine: AsyncEngine, bank: Bank
) -> None:
    """While another replica works on the key, a caller with 0.5 s to spare gets ABORTED /
    IDEMPOTENCY_KEY_IN_USE, and nothing is executed twice."""
    alice, bob = await bank.customer("alice", funds=1_000), await bank.customer("bob")
    key = new_key()
    payment_id = ids.payment_id("service:anonymous", key)
    other_replica = AdvisoryLocks(payment_engine)
    async with other_replica.hold(payment_id, 1.0):
        started = time.monotonic()
        code, reason, _ = await refusal(
            stub.CreatePayment(create(alice, bob, 100, key), timeout=0.5)
        )
        waited = time.monotonic() - started
    assert (code, reason) == (grpc.StatusCode.ABORTED, "IDEMPOTENCY_KEY_IN_USE")
    assert waited < 0.5
    assert await bank.transfers_between(alice, bob) == []
    done = await stub.CreatePayment(create(alice, bob, 100, key))
    assert done.payment.status == pb.PAYMENT_STATUS_COMPLETED
