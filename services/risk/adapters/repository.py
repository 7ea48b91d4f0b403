"""Decisions in PostgreSQL (schema `risk`), with concurrent calls coalesced.

Every scoring looks its transaction id up and then stores a decision. Done
one statement per call through the engine, that was a third of the service's
CPU: per call a pool checkout with its pre-ping, BEGIN, the statement,
COMMIT, and SQLAlchemy's and psycopg's work for each. So the two calls of
the request path go through a `Batcher` (services.common.batching), each on a psycopg
connection of its own in autocommit mode:

* lookups that arrive together are one `SELECT ... WHERE transaction_id = ANY`;
* decisions that arrive together are one multi-row `INSERT ... SELECT FROM
  unnest(...) ON CONFLICT (transaction_id) DO NOTHING` (group commit: one
  statement is one transaction). Each caller waits for that commit, so a
  decision is durable before anyone answers with it.

When a concurrent request stored a decision for the same transaction first
(in an earlier batch or earlier in the same one), this one's row is not
inserted; the stored row is read back and returned, so both callers answer
with one decision. A row the database refuses for another reason (a CHECK)
fails only its own caller: that batch is then stored row by row.

A batch whose connection turns out to be broken (PostgreSQL restarted, say)
is sent once more on a new connection: both statements may be repeated
safely. Driver failures leave as `StorageUnavailable`. Replays and health
checks, which are rare, use the engine.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.batching import Batcher
from services.risk.domain.model import Decision, StoredDecision
from services.risk.service_layer.ports import StorageUnavailable

from .tables import decisions

# Larger batches only come from more callers than this waiting at once; a
# batch of 256 decisions is about 0.5 MB of parameters.
MAX_BATCH = 256
CONNECT_TIMEOUT_SECONDS = 5
# How the store's own connections show in pg_stat_activity.
APPLICATION_NAME = "bankmesh-risk-decisions"

# One statement for any number of rows: each column travels as one array
# parameter. Reason codes are UPPER_SNAKE words, so joining them with commas
# is an exact encoding of the list.
_INSERT_MANY = """
INSERT INTO risk.decisions (
    id, transaction_id, inputs_hash, inputs, features, score, rules_score, model_score,
    decision, reason_codes, ruleset_version, model_version, fallback, created_at
)
SELECT id, transaction_id, inputs_hash, inputs::jsonb, features::jsonb, score, rules_score,
       model_score, decision, string_to_array(reason_codes, ','), ruleset_version,
       model_version, fallback, created_at
FROM unnest(
    %(id)s::uuid[], %(transaction_id)s::text[], %(inputs_hash)s::text[], %(inputs)s::text[],
    %(features)s::text[], %(score)s::float8[], %(rules_score)s::float8[],
    %(model_score)s::float8[], %(decision)s::text[], %(reason_codes)s::text[],
    %(ruleset_version)s::text[], %(model_version)s::text[], %(fallback)s::boolean[],
    %(created_at)s::timestamptz[]
) AS t(
    id, transaction_id, inputs_hash, inputs, features, score, rules_score, model_score,
    decision, reason_codes, ruleset_version, model_version, fallback, created_at
)
ON CONFLICT (transaction_id) DO NOTHING
RETURNING id
"""

_BY_TRANSACTIONS = """
SELECT id, transaction_id, inputs_hash, inputs, features, score, rules_score, model_score,
       decision, reason_codes, ruleset_version, model_version, fallback, created_at
FROM risk.decisions WHERE transaction_id = ANY(%(ids)s::text[])
"""

Result = StoredDecision | BaseException


class SqlDecisionRepository:
    def __init__(
        self, engine: AsyncEngine, *, conninfo: str | None = None, max_batch: int = MAX_BATCH
    ) -> None:
        """`conninfo` is the libpq URL of the engine's database (derived when not given)."""
        self._engine = engine
        conninfo = conninfo or engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._lookup_conn = _Dedicated(conninfo)
        self._insert_conn = _Dedicated(conninfo)
        self._lookups: Batcher[str, StoredDecision | None] = Batcher(
            self._lookup_many, max_batch=max_batch, name="risk-decision-lookups"
        )
        self._inserts: Batcher[StoredDecision, StoredDecision] = Batcher(
            self._insert_many, max_batch=max_batch, name="risk-decision-inserts"
        )

    async def by_transaction(self, transaction_id: str) -> StoredDecision | None:
        return await self._lookups.submit(transaction_id)

    async def insert(self, decision: StoredDecision) -> StoredDecision:
        return await self._inserts.submit(decision)

    async def get(self, decision_id: str) -> StoredDecision | None:
        try:
            key = uuid.UUID(decision_id)
        except ValueError:
            return None
        async with self._connection() as conn:
            row = (await conn.execute(select(decisions).where(decisions.c.id == key))).first()
        return None if row is None else _decision(row._mapping)

    async def ping(self) -> bool:
        try:
            async with self._connection() as conn:
                await conn.execute(text("SELECT 1"))
        except StorageUnavailable:
            return False
        return True

    async def aclose(self) -> None:
        await self._lookup_conn.close()
        await self._insert_conn.close()

    # -- the batches -------------------------------------------------------------------

    async def _lookup_many(self, transaction_ids: Sequence[str]) -> list[StoredDecision | None]:
        found = await self._lookup_conn.run(lambda conn: _stored(conn, transaction_ids))
        return [found.get(transaction_id) for transaction_id in transaction_ids]

    async def _insert_many(self, batch: Sequence[StoredDecision]) -> list[Result]:
        try:
            return await self._insert_conn.run(lambda conn: _insert(conn, batch))
        except psycopg.IntegrityError:
            if len(batch) == 1:
                raise
        # One row broke a constraint: store each on its own, so it fails alone.
        results: list[Result] = []
        for decision in batch:
            try:
                results.extend(
                    await self._insert_conn.run(functools.partial(_insert, batch=[decision]))
                )
            except psycopg.IntegrityError as exc:
                results.append(exc)
        return results

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError, OSError) as exc:
            raise StorageUnavailable("the risk database is unreachable") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StorageUnavailable("the risk database connection was lost") from exc
            raise


Connection = psycopg.AsyncConnection[DictRow]
T = TypeVar("T")


class _Dedicated:
    """One autocommit connection, used by one batcher at a time; reopened when it breaks."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: Connection | None = None

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`await work(connection)`, once more on a new connection if this one was broken."""
        for attempt in (1, 2):
            reused = self._conn is not None and not self._conn.closed
            try:
                conn = await self._open()
                return await work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                await self.close()
                if attempt == 1 and reused:
                    continue  # a connection that broke while idle: try a fresh one
                raise StorageUnavailable("the risk database is unreachable") from exc
        raise AssertionError("unreachable")

    async def _open(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=APPLICATION_NAME,
            )
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error, OSError):
                await conn.close()


async def _insert(conn: Connection, batch: Sequence[StoredDecision]) -> list[Result]:
    cursor = await conn.execute(_INSERT_MANY, _columns(batch))
    inserted = {row["id"] for row in await cursor.fetchall()}
    ids = [uuid.UUID(d.decision_id) for d in batch]
    lost = [d.transaction_id for d, key in zip(batch, ids, strict=True) if key not in inserted]
    stored = await _stored(conn, lost) if lost else {}
    return [
        d if key in inserted else stored[d.transaction_id]
        for d, key in zip(batch, ids, strict=True)
    ]


async def _stored(conn: Connection, transaction_ids: Sequence[str]) -> dict[str, StoredDecision]:
    cursor = await conn.execute(_BY_TRANSACTIONS, {"ids": list(transaction_ids)})
    return {row["transaction_id"]: _decision(row) for row in await cursor.fetchall()}


def _columns(batch: Sequence[StoredDecision]) -> dict[str, list[Any]]:
    return {
        "id": [uuid.UUID(d.decision_id) for d in batch],
        "transaction_id": [d.transaction_id for d in batch],
        "inputs_hash": [d.inputs_hash for d in batch],
        "inputs": [json.dumps(d.inputs) for d in batch],
        "features": [json.dumps(d.features) for d in batch],
        "score": [d.score for d in batch],
        "rules_score": [d.rules_score for d in batch],
        "model_score": [d.model_score for d in batch],
        "decision": [d.decision.value for d in batch],
        "reason_codes": [",".join(d.reason_codes) for d in batch],
        "ruleset_version": [d.ruleset_version for d in batch],
        "model_version": [d.model_version for d in batch],
        "fallback": [d.fallback for d in batch],
        "created_at": [d.created_at for d in batch],
    }


def _decision(row: Any) -> StoredDecision:
    return StoredDecision(
        decision_id=str(row["id"]),
        transaction_id=row["transaction_id"],
        inputs_hash=row["inputs_hash"],
        inputs=row["inputs"],
        features={k: float(v) for k, v in row["features"].items()},
        score=row["score"],
        rules_score=row["rules_score"],
        model_score=row["model_score"],
        decision=Decision(row["decision"]),
        reason_codes=tuple(row["reason_codes"]),
        ruleset_version=row["ruleset_version"],
        model_version=row["model_version"],
        fallback=row["fallback"],
        created_at=row["created_at"],
    )
