"""The edge over real HTTPS in front of the real account, risk and payment services over mTLS.

One module's worth of mesh: each service is its real server (`build_*_server`
with `ServerSecurity`) on port 0, over the session's PostgreSQL and Redis.
The edge reaches account and payment through `MeshClient` with the edge's
own certificate, exactly as in production, via an endpoints.json written for
the test, and serves HTTPS (TLS 1.3, the edge's mesh certificate) with
uvicorn on port 0. Identity is not running: access tokens are signed in the
tests by `TokenIssuer`, whose key the edge's key ring fetches from a stub
JWKS source.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import httpx
import pytest
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.client import MeshClient
from mesh.config import ServiceEnvironment
from mesh.edge.app import build_edge_app
from mesh.edge.auth import AccessTokenVerifier, Authenticator, KeyRing, redis_session_check
from mesh.edge.ratelimit import RateLimiter
from mesh.edge.server import public_tls_context, serving
from mesh.edge.settings import EdgeSettings
from mesh.edge.upstream import GrpcUpstream, health_of
from services.account.adapters.unit_of_work import SqlUnitOfWork as AccountUnitOfWork
from services.account.app import build_account_server
from services.account.service_layer.ledger import Ledger
from services.account.service_layer.unit_of_work import SystemClock as LedgerClock
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
from tests.unit.edge.signing import TokenIssuer


@dataclass
class EdgeMesh:
    url: str
    ca: Path  # the mesh CA, which signed the edge's HTTPS certificate
    ledger: Ledger
    issuer: TokenIssuer
    pki: TestMesh
    ports: dict[str, int]
    redis_url: str

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=client_tls(self.ca), **kwargs)  # type: ignore[arg-type]

    def as_customer(self, customer_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.customer(customer_id)}"}


def client_tls(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    return context


@pytest.fixture(scope="module")
def edge_pki(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(Path(tmp_path_factory.mktemp("edge-pki")))


@pytest.fixture(scope="module")
async def edge_engines(
    databases: DatabaseFactory,
) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    # Small pools: the edge tests send one request at a time.
    payment = create_engine(databases.create(migrate_payment, "edge_payment"), pool_size=4)
    risk = create_engine(databases.create(migrate_risk, "edge_risk"), pool_size=2)
    yield payment, risk
    await payment.dispose()
    await risk.dispose()


@pytest.fixture(scope="module")
async def edge_mesh(
    ledger_engine: AsyncEngine,
    edge_pki: TestMesh,
    edge_engines: tuple[AsyncEngine, AsyncEngine],
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EdgeMesh]:
    pki = edge_pki
    payment_engine, risk_engine = edge_engines
    servers: list[grpc.aio.Server] = []

    async def start(built: tuple[grpc.aio.Server, int, object]) -> int:
        server, port, health = built
        await server.start()
        await health.set_serving(True)  # type: ignore[attr-defined]
        servers.append(server)
        return port

    ledger = Ledger(lambda: AccountUnitOfWork(ledger_engine), LedgerClock())
    account_port = await start(build_account_server(ledger, security=pki.security("account")))
    config = load_ruleset()
    risk_redis: redis.asyncio.Redis = create_redis(redis_url)
    prefix = f"test:edge:{secrets.token_hex(6)}:"
    scorer = build_scorer(
        config,
        redis_state(risk_redis, config, prefix),
        SqlDecisionRepository(risk_engine),
        SystemClock(),
        state_timeout=2.0,
    )
    risk_port = await start(build_risk_server(scorer, security=pki.security("risk")))

    directory = tmp_path_factory.mktemp("edge-endpoints")
    endpoints = directory / "endpoints.json"
    services = {"account": [f"127.0.0.1:{account_port}"], "risk": [f"127.0.0.1:{risk_port}"]}
    endpoints.write_text(json.dumps({"services": services}))
    payment_client = downstreams(dataclasses.replace(pki.env("payment"), endpoints_file=endpoints))
    payments = Payments(
        lambda: PaymentUnitOfWork(payment_engine),
        AdvisoryLocks(payment_engine),
        GrpcLedger(lambda: payment_client.channel("account")),
        GrpcRisk(lambda: payment_client.channel("risk")),
        SystemClock(),
    )
    payment_port = await start(build_payment_server(payments, security=pki.security("payment")))

    edge_endpoints = directory / "edge-endpoints.json"
    services["payment"] = [f"127.0.0.1:{payment_port}"]
    edge_endpoints.write_text(json.dumps({"services": services}))
    edge_env: ServiceEnvironment = dataclasses.replace(
        pki.env("edge"), endpoints_file=edge_endpoints
    )
    edge_client = MeshClient(edge_env)
    issuer = TokenIssuer()
    keys = KeyRing(issuer.jwks)
    await keys.refresh()
    edge_redis = redis.asyncio.Redis.from_url(redis_url, socket_timeout=0.5)
    settings = EdgeSettings(upstreams=("account", "payment"))

    async def probe(service: str) -> str:
        return await health_of(edge_client.channel(service))

    app = build_edge_app(
        upstream=GrpcUpstream(edge_client.channel),
        authenticator=Authenticator(keys, AccessTokenVerifier(), redis_session_check(edge_redis)),
        limiter=RateLimiter(edge_redis, key_prefix=f"{prefix}rate:"),
        settings=settings,
        health=probe,
        keys=keys,
    )
    identity = pki.identity_dir("edge")
    tls = public_tls_context(identity / "cert.pem", identity / "key.pem")
    async with serving(app, tls) as port:
        yield EdgeMesh(
            url=f"https://localhost:{port}",
            ca=identity / "ca.pem",
            ledger=ledger,
            issuer=issuer,
            pki=pki,
            ports={"account": account_port, "payment": payment_port, "edge": port},
            redis_url=redis_url,
        )
    await edge_client.close()
    await payment_client.close()
    for server in servers:
        await server.stop(grace=None)
    keys_left = [key async for key in risk_redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys_left:
        await risk_redis.delete(*keys_left)
    await risk_redis.aclose()
    await edge_redis.aclose()
