"""Many different payments at once: nothing starves, every one finishes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2_grpc
from services.common.database import create_engine
from tests.support.clock import SteppingClock

from .conftest import Bank, make_payments, new_key, start_payment_server
from .test_idempotency import create

pytestmark = pytest.mark.integration


async def test_far_more_concurrent_payments_than_connections_all_complete(
    payment_database_url: str,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    clock: SteppingClock,
    bank: Bank,
) -> None:
    """32 payments at once on a 2+2 connection write pool finish: lock holders cannot starve writers.

    Each payment holds its advisory-lock connection for the whole flow; with
    locks and writes sharing one small pool, this froze with every connection
    held by a lock waiting for a connection to write with. The lock pool is a
    hard bound of 8, as the service's is (no overflow): the other 24 payments
    queue for a lock connection instead of opening more.
    """
    engine = create_engine(payment_database_url, pool_size=2)
    locks_engine = create_engine(payment_database_url, pool_size=8, max_overflow=0)
    alice, bob = await bank.customer("alice", funds=100_000), await bank.customer("bob")
    server = await start_payment_server(
        make_payments(engine, *channels, clock, locks_engine=locks_engine)
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(stub.CreatePayment(create(alice, bob, 100, new_key())) for _ in range(32))
                ),
                timeout=60,
            )
    finally:
        await server.server.stop(grace=None)
        await engine.dispose()
        await locks_engine.dispose()
    assert all(a.payment.status == pb.PAYMENT_STATUS_COMPLETED for a in answers)
    assert await bank.posted(bob) == 32 * 100
    assert await bank.books_balance()
