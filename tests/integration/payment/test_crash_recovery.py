"""Crash recovery with a real process: kill the payment service mid-payment, restart it, count.

The payment service runs as `python -m services.payment`, configured through
the environment like any service the launcher starts, against a database of
its own and the test's account and risk servers (listed in an endpoints
file). `BANKMESH_PAYMENT_CRASH_AT=<step>` makes it SIGKILL itself at that
step, in the middle of a CreatePayment. The test then looks at what the
crash left behind, restarts the service without the hook and waits for its
recovery loop to finish the payment: one final status, exactly one ledger
transfer, and books that balance.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.common.v1 import money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc
from bankmesh.payment.v1 import payment_service_pb2_grpc
from bankmesh.risk.v1 import risk_service_pb2 as risk_pb
from services.common.database import create_engine
from services.payment.adapters import tables
from services.payment.app import migrate
from tests.conftest import DatabaseFactory

from .conftest import Bank, ScriptedRisk, Server, new_key

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
FINAL_WAIT_SECONDS = 15.0


@pytest.fixture(scope="module")
def crash_database_url(databases: DatabaseFactory) -> str:
    """A payment database for these tests alone: the restarted service recovers all it finds."""
    return databases.create(migrate, "payment_crash")


@pytest.fixture
async def crash_engine(crash_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(crash_database_url, pool_size=2)
    yield engine
    await engine.dispose()


@dataclass
class PaymentProcess:
    process: asyncio.subprocess.Process
    address: str
    log: Path

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class Launcher:
    """Starts the payment service the way the launcher does, and keeps its logs."""

    def __init__(self, tmp: Path, database_url: str, account: Server, risk: Server) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.endpoints = tmp / "endpoints.json"
        self.endpoints.write_text(
            json.dumps({"services": {"account": account.address, "risk": risk.address}})
        )
        self.started: list[PaymentProcess] = []

    async def start(self, crash_at: str = "") -> PaymentProcess:
        n = len(self.started)
        ready, log = self.tmp / f"payment-{n}.ready.json", self.tmp / f"payment-{n}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANKMESH_")}
        env.pop("DATABASE_URL", None)
        env.update(
            BANKMESH_DATABASE_URL=self.database_url,
            BANKMESH_LISTEN="127.0.0.1:0",
            BANKMESH_READY_FILE=str(ready),
            BANKMESH_ENDPOINTS=str(self.endpoints),
            BANKMESH_INSECURE_DEV="1",
            BANKMESH_PAYMENT_RECOVERY_INTERVAL_SECONDS="0.2",
            BANKMESH_PAYMENT_RECOVERY_GRACE_SECONDS="0.3",
            PYTHONUNBUFFERED="1",
        )
        if crash_at:
            env["BANKMESH_PAYMENT_CRASH_AT"] = crash_at
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.payment",
                cwd=REPO_ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                if process.returncode is None:
                    process.kill()
                await process.wait()
                pytest.fail(f"the payment service did not start:\n{log.read_text()}")
            await asyncio.sleep(0.05)
        started = PaymentProcess(process, json.loads(ready.read_text())["address"], log)
        self.started.append(started)
        return started

    async def stop_all(self) -> None:
        for started in self.started:
            await started.stop()


@pytest.fixture
async def launcher(
    tmp_path: Path, crash_database_url: str, account_server: Server, risk_server: Server
) -> AsyncIterator[Launcher]:
    launcher = Launcher(tmp_path, crash_database_url, account_server, risk_server)
    yield launcher
    await launcher.stop_all()


async def payment_stub(address: str) -> tuple[grpc.aio.Channel, Stub]:
    channel = grpc.aio.insecure_channel(address)
    return channel, payment_service_pb2_grpc.PaymentServiceStub(channel)


async def stored_payment(engine: AsyncEngine, key: str) -> tuple[uuid.UUID, str, str | None]:
    """(id, status, risk outcome) of the payment made with this key, read from its database."""
    p = tables.payments
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(p.c.id, p.c.status, p.c.risk_outcome).where(p.c.idempotency_key == key)
            )
        ).one()
    return row.id, row.status, row.risk_outcome


async def wait_until_settled(stub: Stub, payment_id: uuid.UUID, status: int) -> pb.Payment:
    deadline = time.monotonic() + FINAL_WAIT_SECONDS
    while True:
        payment = (await stub.GetPayment(svc.GetPaymentRequest(payment_id=str(payment_id)))).payment
        if payment.status == status or time.monotonic() > deadline:
            return payment
        await asyncio.sleep(0.1)


async def crash_during(
    launcher: Launcher, step: str, request: svc.CreatePaymentRequest
) -> PaymentProcess:
    """Start with the hook armed, send the request, and watch the process die at `step`."""
    doomed = await launcher.start(crash_at=step)
    channel, stub = await payment_stub(doomed.address)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await stub.CreatePayment(request, timeout=10)
    assert cut.value.code() is grpc.StatusCode.UNAVAILABLE
    assert await asyncio.wait_for(doomed.process.wait(), 10) == -signal.SIGKILL
    assert f"killing the process at {step}" in doomed.log.read_text()
    return doomed


def create(source: str, destination: str, amount: int, key: str) -> svc.CreatePaymentRequest:
    return svc.CreatePaymentRequest(
        idempotency_key=key,
        source_account_id=source,
        destination_account_id=destination,
        amount=money_pb2.Money(minor_units=amount, currency_code="EUR"),
    )


# What a crash at each step leaves: (payment status, risk outcome, ledger transfers).
# The payment is stored with its route, so it is stored only once risk answered.
LEFT_BEHIND = {
    "after_persist": ("PENDING", "APPROVE", []),
    "after_transfer": ("PENDING", "APPROVE", ["SINGLE_PHASE"]),
}


@pytest.mark.parametrize("step", list(LEFT_BEHIND))
async def test_a_payment_killed_at_any_step_completes_once_after_a_restart(
    step: str, launcher: Launcher, bank: Bank, risk: ScriptedRisk, crash_engine: AsyncEngine
) -> None:
    """SIGKILL mid-payment, restart: COMPLETED, one ledger transfer, books balanced."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    key = new_key()
    await crash_during(launcher, step, create(alice, bob, 2_500, key))

    payment_id, status, outcome = await stored_payment(crash_engine, key)
    assert (status, outcome, await bank.transfers_between(alice, bob)) == LEFT_BEHIND[step]

    restarted = await launcher.start()
    channel, stub = await payment_stub(restarted.address)
    async with channel:
        payment = await wait_until_settled(stub, payment_id, pb.PAYMENT_STATUS_COMPLETED)
        replay = (await stub.CreatePayment(create(alice, bob, 2_500, key))).payment

    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.history[-1].actor == "payment-recovery"
    assert replay.status == pb.PAYMENT_STATUS_COMPLETED
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert (await bank.posted(alice), await bank.posted(bob)) == (7_500, 2_500)
    assert set(risk.calls) == {str(payment_id)}
    assert await bank.books_balance()


async def test_a_payment_killed_before_it_was_stored_is_made_once_by_the_clients_retry(
    launcher: Launcher, bank: Bank, risk: ScriptedRisk, crash_engine: AsyncEngine
) -> None:
    """SIGKILL after risk answered, before anything was stored: the retry with the key pays once."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    key = new_key()
    await crash_during(launcher, "after_risk", create(alice, bob, 2_500, key))
    p = tables.payments
    async with crash_engine.connect() as conn:
        stored = await conn.scalar(select(p.c.id).where(p.c.idempotency_key == key))
    assert stored is None
    assert await bank.transfers_between(alice, bob) == []

    restarted = await launcher.start()
    channel, stub = await payment_stub(restarted.address)
    async with channel:
        payment = (await stub.CreatePayment(create(alice, bob, 2_500, key))).payment
        replay = (await stub.CreatePayment(create(alice, bob, 2_500, key))).payment

    assert payment.status == replay.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.payment_id == replay.payment_id
    assert await bank.transfers_between(alice, bob) == ["SINGLE_PHASE"]
    assert (await bank.posted(alice), await bank.posted(bob)) == (7_500, 2_500)
    assert set(risk.calls) == {payment.payment_id}  # asked twice, for one payment id
    assert await bank.books_balance()


async def test_an_approval_killed_before_the_ledger_heard_of_it_is_carried_out(
    launcher: Launcher, bank: Bank, risk: ScriptedRisk, crash_engine: AsyncEngine
) -> None:
    """A reviewer's approval survives a SIGKILL: after a restart the hold is posted, once."""
    alice, bob = await bank.customer("alice", funds=10_000), await bank.customer("bob")
    risk.decide(4_000, risk_pb.DECISION_REVIEW, "AMOUNT_UNUSUAL")
    key = new_key()
    first = await launcher.start(crash_at="after_review_decision")
    channel, stub = await payment_stub(first.address)
    async with channel:
        held = (await stub.CreatePayment(create(alice, bob, 4_000, key))).payment
        assert held.status == pb.PAYMENT_STATUS_IN_REVIEW
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ApprovePayment(
                svc.ApprovePaymentRequest(payment_id=held.payment_id), timeout=10
            )
    assert await asyncio.wait_for(first.process.wait(), 10) == -signal.SIGKILL
    assert await bank.transfers_between(alice, bob) == ["PENDING"]

    restarted = await launcher.start()
    channel, stub = await payment_stub(restarted.address)
    async with channel:
        payment_id = uuid.UUID(held.payment_id)
        payment = await wait_until_settled(stub, payment_id, pb.PAYMENT_STATUS_COMPLETED)

    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert payment.history[-1].reason == "REVIEW_APPROVED"
    assert await bank.transfers_between(alice, bob) == ["PENDING", "POST_PENDING"]
    assert (await bank.posted(alice), await bank.posted(bob)) == (6_000, 4_000)
    assert await bank.books_balance()
