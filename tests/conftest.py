"""Where the tests find PostgreSQL and Redis.

`BANKMESH_TEST_DATABASE_URL` names a PostgreSQL server (CI points it at the
machine's); without it the tests start an embedded one. Either way each test
session gets a database of its own, migrated from scratch and dropped at the
end, so runs never see each other's rows. `BANKMESH_TEST_REDIS_URL` does the
same for Redis (embedded redis-server otherwise); tests keep to keys of their
own, named with a random prefix.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.runtime.postgres import start_embedded_postgres, with_database
from mesh.runtime.redis import start_embedded_redis
from services.account.adapters.migrations import upgrade
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.service_layer.ledger import Ledger
from services.common.database import create_engine
from tests.support.clock import SteppingClock


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("BANKMESH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = start_embedded_postgres(Path(tmp_path_factory.mktemp("embedded-pg")))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("BANKMESH_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = start_embedded_redis(Path(tmp_path_factory.mktemp("embedded-redis")))
    try:
        yield server.url
    finally:
        server.stop()


class DatabaseFactory:
    """Creates migrated databases for a test session and drops them all at its end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def create(self, upgrade: Callable[[str], None], label: str) -> str:
        name = f"bankmesh_test_{label}_{secrets.token_hex(4)}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = with_database(self.server_url, name)
        upgrade(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def databases(postgres_server_url: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_server_url)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def ledger_database_url(databases: DatabaseFactory) -> str:
    """A fresh database with the ledger schema, dropped after the session."""
    return databases.create(upgrade, "ledger")


@pytest.fixture(scope="session")
async def ledger_engine(ledger_database_url: str) -> AsyncIterator[AsyncEngine]:
    # Modest pools: every suite shares one PostgreSQL server and its max_connections.
    engine = create_engine(ledger_database_url, pool_size=8)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def ledger(ledger_engine: AsyncEngine, clock: SteppingClock) -> Ledger:
    return Ledger(lambda: SqlUnitOfWork(ledger_engine), clock)
