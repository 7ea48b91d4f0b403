"""Fixtures for the risk service against real PostgreSQL and Redis.

The decisions database is created once per session (from the shared
`databases` factory) with the risk migrations. Every test gets its own Redis
key prefix, so tests never see each other's velocity state, and its keys are
deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.database import create_engine
from services.risk.adapters.redis_state import RedisState
from services.risk.adapters.repository import SqlDecisionRepository
from services.risk.adapters.ruleset_file import RiskConfig, load_ruleset
from services.risk.app import build_scorer, create_redis, migrate, redis_state
from services.risk.service_layer.scoring import RiskScorer
from tests.conftest import DatabaseFactory

ScorerFactory = Callable[..., RiskScorer]


@pytest.fixture(scope="session")
def risk_database_url(databases: DatabaseFactory) -> str:
    return databases.create(migrate, "risk")


@pytest.fixture(scope="session")
async def risk_engine(risk_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(risk_database_url, pool_size=6)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def risk_config() -> RiskConfig:
    return load_ruleset()


@pytest.fixture(scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def key_prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    prefix = f"test:risk:{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
def state(
    redis_client: redis.asyncio.Redis, risk_config: RiskConfig, key_prefix: str
) -> RedisState:
    return redis_state(redis_client, risk_config, key_prefix)


@pytest.fixture
async def decisions(risk_engine: AsyncEngine) -> AsyncIterator[SqlDecisionRepository]:
    repository = SqlDecisionRepository(risk_engine)
    yield repository
    await repository.aclose()


@pytest.fixture
def make_scorer(
    risk_config: RiskConfig, state: RedisState, decisions: SqlDecisionRepository
) -> ScorerFactory:
    """A scorer on the test's Redis prefix; keyword arguments override build_scorer's."""

    def make(**overrides: object) -> RiskScorer:
        arguments: dict[str, object] = {
            "config": risk_config,
            "state": state,
            "decisions": decisions,
            "state_timeout": 2.0,  # generous: these tests are about correctness, not speed
            **overrides,
        }
        return build_scorer(**arguments)  # type: ignore[arg-type]

    return make


@pytest.fixture
def scorer(make_scorer: ScorerFactory) -> RiskScorer:
    return make_scorer()
