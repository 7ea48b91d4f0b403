"""Decisions in PostgreSQL (schema `risk`), one short transaction per call.

Storing is `INSERT ... ON CONFLICT (transaction_id) DO NOTHING`: when a
concurrent request stored a decision for the same transaction first, this
one's insert does nothing and the stored row is read back and returned, so
both callers answer with one decision. Driver failures leave as
`StorageUnavailable`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.risk.domain.model import Decision, StoredDecision
from services.risk.service_layer.ports import StorageUnavailable

from .tables import decisions


class SqlDecisionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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

    async def by_transaction(self, transaction_id: str) -> StoredDecision | None:
        async with self._connection() as conn:
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.transaction_id == transaction_id)
                )
            ).first()
        return None if row is None else _decision(row._mapping)

    async def get(self, decision_id: str) -> StoredDecision | None:
        try:
            key = uuid.UUID(decision_id)
        except ValueError:
            return None
        async with self._connection() as conn:
            row = (await conn.execute(select(decisions).where(decisions.c.id == key))).first()
        return None if row is None else _decision(row._mapping)

    async def insert(self, decision: StoredDecision) -> StoredDecision:
        statement = (
            insert(decisions)
            .values(
                id=uuid.UUID(decision.decision_id),
                transaction_id=decision.transaction_id,
                inputs_hash=decision.inputs_hash,
                inputs=decision.inputs,
                features=decision.features,
                score=decision.score,
                rules_score=decision.rules_score,
                model_score=decision.model_score,
                decision=decision.decision.value,
                reason_codes=list(decision.reason_codes),
                ruleset_version=decision.ruleset_version,
                model_version=decision.model_version,
                fallback=decision.fallback,
                created_at=decision.created_at,
            )
            .on_conflict_do_nothing(index_elements=["transaction_id"])
            .returning(decisions.c.id)
        )
        async with self._connection() as conn:
            inserted = (await conn.execute(statement)).first()
            if inserted is not None:
                return decision
            row = (
                await conn.execute(
                    select(decisions).where(decisions.c.transaction_id == decision.transaction_id)
                )
            ).one()
        return _decision(row._mapping)

    async def ping(self) -> bool:
        try:
            async with self._connection() as conn:
                await conn.execute(text("SELECT 1"))
        except StorageUnavailable:
            return False
        return True


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
