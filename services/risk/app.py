"""Wiring of the risk service: configuration in, a running gRPC server out.

Nothing happens at import time. `serve()` is what `python -m services.risk`
runs; tests use `build_risk_server()` directly with port 0.

Configuration comes from `ServiceEnvironment.from_env("risk")`
(BANKMESH_DATABASE_URL for decisions, BANKMESH_REDIS_URL for velocity state)
plus the risk service's own variables:

| variable                        | default                     | meaning                        |
|---------------------------------|-----------------------------|--------------------------------|
| BANKMESH_RISK_RULESET           | services/risk/rulesets/default.toml | ruleset (pins the model) |
| BANKMESH_RISK_KEY_PREFIX        | bankmesh:risk:              | prefix of every Redis key      |
| BANKMESH_RISK_STATE_TIMEOUT_MS  | 25                          | Redis budget per request       |

The ruleset and its model are loaded and checked before the server starts: a
bad ruleset or a model file that does not match its pinned hash stops the
process with the ruleset's error, rather than scoring with half a config.

Health: SERVING while the decision store (PostgreSQL) answers. A Redis
outage does not make the service NOT_SERVING: the fallback still decides;
it is logged as degraded instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bankmesh.risk.v1 import risk_service_pb2, risk_service_pb2_grpc
from mesh import lifecycle
from mesh.config import ServiceEnvironment
from mesh.security import server_security
from mesh.server import HealthReporter, ServerSecurity, build_server
from services.common.database import create_engine
from services.risk.adapters import migrations
from services.risk.adapters.redis_state import RedisState
from services.risk.adapters.repository import SqlDecisionRepository
from services.risk.adapters.ruleset_file import DEFAULT_RULESET, RiskConfig, load_ruleset
from services.risk.domain.history import StateParams
from services.risk.domain.ruleset import RulesetError
from services.risk.entrypoints.errors import translate
from services.risk.entrypoints.grpc_servicer import RiskServicer
from services.risk.service_layer.ports import (
    Clock,
    DecisionRepository,
    StateStore,
    SystemClock,
)
from services.risk.service_layer.scoring import DEFAULT_STATE_TIMEOUT, RiskScorer

log = logging.getLogger("bankmesh.risk")

SERVICE_NAME = risk_service_pb2.DESCRIPTOR.services_by_name["RiskService"].full_name
DEFAULT_KEY_PREFIX = "bankmesh:risk:"
# The request path has two connections of its own (batched lookups and inserts,
# adapters/repository.py); the pool only serves health checks and replays.
POOL_SIZE = 2


def migrate(database_url: str) -> None:
    """Bring the risk schema up to date (the launcher calls this before starting us)."""
    migrations.upgrade(database_url)


@dataclass(frozen=True, slots=True)
class RiskSettings:
    ruleset_path: Path = DEFAULT_RULESET
    key_prefix: str = DEFAULT_KEY_PREFIX
    state_timeout: float = DEFAULT_STATE_TIMEOUT

    @classmethod
    def from_env(cls) -> RiskSettings:
        env = os.environ
        timeout_ms = env.get("BANKMESH_RISK_STATE_TIMEOUT_MS")
        return cls(
            ruleset_path=Path(env.get("BANKMESH_RISK_RULESET") or DEFAULT_RULESET),
            key_prefix=env.get("BANKMESH_RISK_KEY_PREFIX") or DEFAULT_KEY_PREFIX,
            state_timeout=float(timeout_ms) / 1000 if timeout_ms else DEFAULT_STATE_TIMEOUT,
        )


def create_redis(url: str) -> redis.asyncio.Redis:
    """A client that fails fast: every call has a budget, so retrying inside it only delays
    the fallback; the socket timeouts are a backstop for calls made outside a budget.

    More calls in flight than connections wait for one (within their budget)
    rather than fail: a burst is queueing, not a Redis outage, and must not
    trip the breaker into fallback decisions."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
        timeout=1.0,
    )
    return redis.asyncio.Redis.from_pool(pool)


def redis_state(client: redis.asyncio.Redis, config: RiskConfig, prefix: str) -> RedisState:
    return RedisState(client, StateParams.from_settings(config.ruleset.state), prefix)


def build_scorer(
    config: RiskConfig,
    state: StateStore,
    decisions: DecisionRepository,
    clock: Clock | None = None,
    *,
    state_timeout: float = DEFAULT_STATE_TIMEOUT,
) -> RiskScorer:
    return RiskScorer(
        config.ruleset,
        config.model,
        state,
        decisions,
        clock or SystemClock(),
        state_timeout=state_timeout,
    )


def build_risk_server(
    scorer: RiskScorer,
    address: str = "127.0.0.1:0",
    security: ServerSecurity | None = None,
    clock: Clock | None = None,
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    def register(server: grpc.aio.Server) -> None:
        risk_service_pb2_grpc.add_RiskServiceServicer_to_server(
            RiskServicer(scorer, clock or SystemClock()), server
        )

    return build_server(
        service="risk",
        register=register,
        service_names=[SERVICE_NAME],
        translate_errors=translate,
        address=address,
        security=security,
    )


async def serve(
    env: ServiceEnvironment,
    settings: RiskSettings | None = None,
    clock: Clock | None = None,
) -> None:
    settings = settings or RiskSettings.from_env()
    try:
        config = load_ruleset(settings.ruleset_path)
    except RulesetError as exc:
        raise SystemExit(f"risk service: {exc}") from exc
    if not env.redis_url:
        raise SystemExit(
            "risk service: set BANKMESH_REDIS_URL (velocity state); without it every "
            "decision would be a fallback"
        )
    engine = create_engine(env.require_database(), pool_size=POOL_SIZE)
    client = create_redis(env.redis_url)
    state = redis_state(client, config, settings.key_prefix)
    decisions = SqlDecisionRepository(engine)
    scorer = build_scorer(config, state, decisions, clock, state_timeout=settings.state_timeout)
    server, port, health = build_risk_server(scorer, env.listen, server_security(env), clock)
    log.info("ruleset %s, model %s", config.ruleset.version, config.model.version)
    await lifecycle.run_server(
        env=env,
        server=server,
        port=port,
        health=health,
        # A decision that cannot be stored cannot be audited: PostgreSQL is
        # required. Redis is not: without it the fallback still decides.
        dependencies=[
            lifecycle.Dependency("PostgreSQL", decisions.ping),
            lifecycle.Dependency("Redis", state.ping, required=False),
        ],
        log=log,
        cleanup=[client.aclose, decisions.aclose, engine.dispose],
    )


def main() -> None:
    lifecycle.main("risk", serve)
