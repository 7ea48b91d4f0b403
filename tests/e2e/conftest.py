"""The whole mesh in one test process: account, risk and payment over mutual TLS.

Each service is its real server (`build_*_server` with `ServerSecurity`) on
port 0 over the session's PostgreSQL and Redis; payment reaches the others
through `MeshClient` with its own certificate, exactly as in production, via
an endpoints.json written for the test. Spans of all three go to one
in-memory exporter, so a test can follow a payment's trace across services.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc.aio
import pytest
import redis.asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.account.v1 import account_service_pb2_grpc
from bankmesh.payment.v1 import payment_service_pb2_grpc
from services.account.app import build_account_server
from services.account.service_layer.ledger import Ledger
from services.common.database import create_engine
from services.payment.adapters.ledger_client import GrpcLedger
from services.payment.adapters.locks import AdvisoryLocks
from services.payment.adapters.risk_client import GrpcRisk
from services.payment.adapters.unit_of_work import SqlUnitOfWork as PaymentUnitOfWork
from services.payment.app import build_payment_server, downstreams
from services.payment.app import migrate as migrate_payment
from services.payment.service_layer.payments import Payments
from services.risk.adapters.repository import SqlDecisionRepository
from services.risk.adapters.ruleset_file import load_ruleset
from services.risk.app import build_risk_server, build_scorer, create_redis, redis_state
from services.risk.app import migrate as migrate_risk
from services.risk.service_layer.ports import SystemClock
from tests.conftest import DatabaseFactory
from tests.support.mesh import TestMesh

if TYPE_CHECKING:
    from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceAsyncStub
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub

# Payments from this device are declined by the test ruleset's deny list.
STOLEN_DEVICE = "device-stolen-0001"


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(Path(tmp_path_factory.mktemp("e2e-pki")))


@pytest.fixture(scope="session")
async def payment_engine(databases: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases.create(migrate_payment, "e2e_payment"), pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def risk_engine(databases: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases.create(migrate_risk, "e2e_risk"), pool_size=4)
    yield engine
    await engine.dispose()


@dataclass
class Mesh:
    account: AccountServiceAsyncStub  # as the operator
    payment: PaymentServiceAsyncStub  # as the operator
    ledger: Ledger
    pki: TestMesh
    ports: dict[str, int]


@pytest.fixture
async def mesh(
    ledger: Ledger,
    pki: TestMesh,
    spans: InMemorySpanExporter,
    payment_engine: AsyncEngine,
    risk_engine: AsyncEngine,
    redis_url: str,
    tmp_path: Path,
) -> AsyncIterator[Mesh]:
    servers: list[grpc.aio.Server] = []

    async def start(built: tuple[grpc.aio.Server, int, object]) -> int:
        server, port, _ = built
        await server.start()
        servers.append(server)
        return port

    account_port = await start(build_account_server(ledger, security=pki.security("account")))

    config = load_ruleset()
    deny = dataclasses.replace(config.ruleset.deny_list, devices=frozenset({STOLEN_DEVICE}))
    config = dataclasses.replace(
        config, ruleset=dataclasses.replace(config.ruleset, deny_list=deny)
    )
    redis_client: redis.asyncio.Redis = create_redis(redis_url)
    prefix = f"test:e2e:{secrets.token_hex(6)}:"
    scorer = build_scorer(
        config,
        redis_state(redis_client, config, prefix),
        SqlDecisionRepository(risk_engine),
        SystemClock(),
        state_timeout=2.0,
    )
    risk_port = await start(build_risk_server(scorer, security=pki.security("risk")))

    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "services": {
                    "account": [f"127.0.0.1:{account_port}"],
                    "risk": [f"127.0.0.1:{risk_port}"],
                }
            }
        )
    )
    payment_env = dataclasses.replace(pki.env("payment"), endpoints_file=endpoints)
    client = downstreams(payment_env)
    payments = Payments(
        lambda: PaymentUnitOfWork(payment_engine),
        AdvisoryLocks(payment_engine),
        GrpcLedger(lambda: client.channel("account")),
        GrpcRisk(lambda: client.channel("risk")),
        SystemClock(),
    )
    payment_port = await start(build_payment_server(payments, security=pki.security("payment")))

    ports = {"account": account_port, "risk": risk_port, "payment": payment_port}
    async with (
        pki.channel("operator", "account", account_port) as account_channel,
        pki.channel("operator", "payment", payment_port) as payment_channel,
    ):
        yield Mesh(
            account=account_service_pb2_grpc.AccountServiceStub(account_channel),
            payment=payment_service_pb2_grpc.PaymentServiceStub(payment_channel),
            ledger=ledger,
            pki=pki,
            ports=ports,
        )
    await client.close()
    for server in servers:
        await server.stop(grace=None)
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis_client.delete(*keys)
    await redis_client.aclose()
