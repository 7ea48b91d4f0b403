"""The decision store under concurrency: batched, durable before the answer, one per transaction."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.risk.adapters.repository import APPLICATION_NAME, SqlDecisionRepository
from services.risk.domain.model import Decision, StoredDecision
from services.risk.service_layer.ports import StorageUnavailable

pytestmark = pytest.mark.integration


def decision(transaction_id: str | None = None, **changes: object) -> StoredDecision:
    base = StoredDecision(
        decision_id=str(uuid.uuid4()),
        transaction_id=transaction_id or f"t-{uuid.uuid4()}",
        inputs_hash="0" * 64,
        inputs={"amount": 12_34, "currency": "EUR"},
        features={"amount": 12.34, "src_count_60s": 1.0, "geo_km": 0.1 + 0.2},
        score=0.125,
        rules_score=0.0,
        model_score=0.25,
        decision=Decision.APPROVE,
        reason_codes=(),
        ruleset_version="test",
        model_version="hgb-test",
        fallback=False,
        created_at=datetime.now(UTC),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_concurrent_decisions_are_all_stored_and_read_back_exactly(
    decisions: SqlDecisionRepository,
) -> None:
    """Fifty stored at once: each caller gets its own decision, and each reads back equal."""
    wanted = [
        decision(reason_codes=("NEW_PAYEE", "VELOCITY_COUNT")[: i % 3], score=i / 64)
        for i in range(50)
    ]
    stored = await asyncio.gather(*(decisions.insert(d) for d in wanted))
    assert stored == wanted
    found = await asyncio.gather(*(decisions.by_transaction(d.transaction_id) for d in wanted))
    assert found == wanted


async def test_two_decisions_for_one_transaction_in_one_batch_store_the_first(
    decisions: SqlDecisionRepository, risk_engine: AsyncEngine
) -> None:
    transaction_id = f"t-{uuid.uuid4()}"
    first, second = decision(transaction_id), decision(transaction_id, score=0.5)
    answers = await asyncio.gather(decisions.insert(first), decisions.insert(second))
    assert list(answers) == [first, first]
    async with risk_engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM risk.decisions WHERE transaction_id = :t"),
            {"t": transaction_id},
        )
    assert count == 1


async def test_a_row_the_database_refuses_fails_alone(decisions: SqlDecisionRepository) -> None:
    """A score outside [0, 1] breaks a CHECK: that caller fails, the others are stored."""
    good = [decision() for _ in range(3)]
    bad = decision(score=1.5)
    results = await asyncio.gather(
        *(decisions.insert(d) for d in (good[0], bad, good[1], good[2])), return_exceptions=True
    )
    assert [results[0], results[2], results[3]] == good
    assert isinstance(results[1], Exception) and not isinstance(results[1], StorageUnavailable)
    assert await decisions.by_transaction(bad.transaction_id) is None


async def test_an_unreachable_database_is_storage_unavailable(risk_engine: AsyncEngine) -> None:
    unreachable = SqlDecisionRepository(
        risk_engine, conninfo="postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"
    )
    with pytest.raises(StorageUnavailable):
        await unreachable.insert(decision())
    with pytest.raises(StorageUnavailable):
        await unreachable.by_transaction("t-1")
    await unreachable.aclose()


async def test_a_connection_broken_while_idle_is_replaced_without_failing_a_call(
    decisions: SqlDecisionRepository, risk_engine: AsyncEngine
) -> None:
    """PostgreSQL ending the store's connections (a restart, say) costs no caller an error."""
    await decisions.insert(decision())
    await decisions.by_transaction("t-warm")
    async with risk_engine.connect() as conn:
        terminated = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": APPLICATION_NAME},
        )
    assert terminated >= 2
    again = decision()
    assert await decisions.insert(again) == again
    assert await decisions.by_transaction(again.transaction_id) == again
