"""Scoring end to end with real PostgreSQL and Redis: storage, replay, idempotency, fallback."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.risk.adapters.ruleset_file import RiskConfig
from services.risk.app import create_redis, redis_state
from services.risk.domain.errors import DecisionConflict, DecisionNotFound
from services.risk.domain.model import Decision, GeoPoint, History, Transaction
from services.risk.service_layer.scoring import RiskScorer

from .conftest import ScorerFactory

pytestmark = pytest.mark.integration

PARIS = GeoPoint(48.8566, 2.3522)
NEW_YORK = GeoPoint(40.7128, -74.006)


def payment(customer: str, minutes: float = 0.0, **changes: object) -> Transaction:
    base = Transaction(
        transaction_id=str(uuid.uuid4()),
        customer_id=customer,
        source_account_id=f"acc-{customer}",
        destination_account_id=f"acc-{customer}-landlord",
        amount=40_00,
        currency="EUR",
        occurred_at=datetime.now(UTC) + timedelta(minutes=minutes),
        channel="MOBILE",
        device_id=f"{customer}-phone",
        geo=PARIS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_a_decision_is_stored_with_everything_needed_to_replay_it(
    scorer: RiskScorer, risk_engine: AsyncEngine
) -> None:
    """The row holds inputs, their hash, features, scores, versions; replay agrees with it."""
    customer = f"c-{uuid.uuid4().hex[:8]}"
    history = [payment(customer, minutes=-600 + 30 * i) for i in range(8)]
    for t in history:
        await scorer.score(t)
    # A new phone in New York, ten minutes after Paris, to a new payee, for a lot of money.
    suspicious = payment(
        customer,
        minutes=-600 + 30 * 7 + 10,
        device_id="strange-phone",
        geo=NEW_YORK,
        destination_account_id="acc-unknown",
        amount=3_000_00,
    )
    decision = await scorer.score(suspicious)
    assert decision.decision is not Decision.APPROVE
    assert {"NEW_DEVICE", "NEW_PAYEE", "AMOUNT_ANOMALY", "IMPOSSIBLE_TRAVEL"} <= set(
        decision.reason_codes
    )
    async with risk_engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM risk.decisions WHERE transaction_id = :t"),
                    {"t": suspicious.transaction_id},
                )
            )
            .one()
            ._mapping
        )
    assert str(row["id"]) == decision.decision_id
    assert row["inputs_hash"] == suspicious.inputs_hash()
    assert row["inputs"]["amount"] == 3_000_00
    assert row["features"]["device_seen"] == 0.0
    assert row["decision"] == decision.decision.value
    assert row["ruleset_version"] == scorer.ruleset.version
    assert row["model_version"] == scorer.model.version
    assert row["fallback"] is False

    replay = await scorer.replay(decision.decision_id)
    assert replay.matches, replay.differences
    assert replay.recomputed.score == decision.score


async def test_every_stored_decision_replays_to_the_same_outcome(scorer: RiskScorer) -> None:
    """A varied run of payments (quiet, bursts, big amounts) all replay identically."""
    customer = f"c-{uuid.uuid4().hex[:8]}"
    decisions = []
    for i in range(30):
        amount = 40_00 if i % 7 else 2_500_00
        t = payment(customer, minutes=i * 0.1, amount=amount, destination_account_id=f"p-{i % 4}")
        decisions.append(await scorer.score(t))
    assert len({d.decision for d in decisions}) >= 2
    for d in decisions:
        replay = await scorer.replay(d.decision_id)
        assert replay.matches, replay.differences


async def test_a_second_payment_to_the_same_friend_ten_seconds_later_is_approved(
    scorer: RiskScorer,
) -> None:
    """What `bankmesh pay` sends (channel API, a device, no position): both payments go through."""
    customer = f"c-{uuid.uuid4().hex[:8]}"
    first = payment(
        customer,
        amount=25_50,
        channel="API",
        geo=None,
        device_id="carol-phone",
        destination_account_id=f"acc-{customer}-friend",
    )
    second = replace(
        first,
        transaction_id=str(uuid.uuid4()),
        amount=12_00,
        occurred_at=first.occurred_at + timedelta(seconds=10),
    )
    assert (await scorer.score(first)).decision is Decision.APPROVE
    decision = await scorer.score(second)
    assert decision.decision is Decision.APPROVE, decision


async def test_replaying_an_unknown_decision_is_not_found(scorer: RiskScorer) -> None:
    """replay() names the missing decision instead of guessing."""
    with pytest.raises(DecisionNotFound):
        await scorer.replay(str(uuid.uuid4()))


async def test_scoring_a_transaction_twice_returns_the_stored_decision(
    scorer: RiskScorer, redis_client: object, key_prefix: str
) -> None:
    """The retry answers the first decision and the velocity state counts it once."""
    t = payment(f"c-{uuid.uuid4().hex[:8]}")
    first = await scorer.score(t)
    again = await scorer.score(t)
    assert again == first
    zcard = await redis_client.zcard(f"{key_prefix}v1:vs:{t.source_account_id}")  # type: ignore[attr-defined]
    assert zcard == 1


async def test_concurrent_retries_of_one_transaction_agree_on_one_decision(
    scorer: RiskScorer,
) -> None:
    """Ten racing copies of one request store one decision and all return it."""
    t = payment(f"c-{uuid.uuid4().hex[:8]}")
    decisions = await asyncio.gather(*(scorer.score(t) for _ in range(10)))
    assert len({d.decision_id for d in decisions}) == 1


async def test_a_transaction_id_reused_with_other_inputs_is_a_conflict(scorer: RiskScorer) -> None:
    """Same id, different amount: EXISTS_WITH_DIFFERENT_FIELDS rather than a silent answer."""
    t = payment(f"c-{uuid.uuid4().hex[:8]}")
    await scorer.score(t)
    with pytest.raises(DecisionConflict):
        await scorer.score(replace(t, amount=t.amount + 1))


async def test_a_retry_without_occur_time_is_the_same_request(scorer: RiskScorer) -> None:
    """When the service's clock supplied the time, a later retry still matches."""
    t = payment(f"c-{uuid.uuid4().hex[:8]}", occurred_at_given=False)
    first = await scorer.score(t)
    later = replace(t, occurred_at=t.occurred_at + timedelta(seconds=3))
    assert await scorer.score(later) == first


async def test_with_redis_unreachable_the_fallback_decides_within_the_deadline(
    make_scorer: ScorerFactory, risk_config: RiskConfig
) -> None:
    """A closed port: fallback=True, a stateless decision, and the decision is still stored."""
    client = create_redis("redis://127.0.0.1:1/0")
    scorer = make_scorer(state=redis_state(client, risk_config, "test:down:"), state_timeout=0.025)
    small = await asyncio.wait_for(scorer.score(payment("nobody")), timeout=1.0)
    large = await asyncio.wait_for(scorer.score(payment("nobody", amount=5_000_00)), 1.0)
    assert small.fallback and large.fallback
    assert small.decision is Decision.APPROVE
    assert large.decision is Decision.REVIEW
    assert "FALLBACK_AMOUNT_LIMIT" in large.reason_codes
    replay = await scorer.replay(large.decision_id)
    assert replay.matches, replay.differences
    await client.aclose()


class SlowState:
    """A state store that answers far too late, as an overloaded Redis would."""

    async def observe(self, txn: Transaction) -> History:
        await asyncio.sleep(5)
        raise AssertionError("the budget should have expired first")

    async def ping(self) -> bool:
        return True


async def test_a_slow_redis_costs_one_budget_then_the_breaker_skips_it(
    make_scorer: ScorerFactory,
) -> None:
    """The first call waits out its 25 ms budget; the next ones do not wait at all."""
    scorer = make_scorer(state=SlowState(), state_timeout=0.025)
    first = await asyncio.wait_for(scorer.score(payment("slow")), timeout=1.0)
    assert first.fallback
    assert not scorer.state_available
    second = await asyncio.wait_for(scorer.score(payment("slow")), timeout=1.0)
    assert second.fallback


async def test_the_caller_deadline_shortens_the_state_budget(make_scorer: ScorerFactory) -> None:
    """With no time left for Redis, the fallback answers without trying it."""
    scorer = make_scorer(state=SlowState(), state_timeout=10.0)
    decision = await asyncio.wait_for(scorer.score(payment("hurry"), deadline=0.03), 1.0)
    assert decision.fallback
    assert scorer.state_available  # Redis was never asked, so it was not blamed


async def test_stored_decisions_cannot_be_rewritten(
    scorer: RiskScorer, risk_engine: AsyncEngine
) -> None:
    """The decisions table refuses UPDATE: a decision is evidence."""
    decision = await scorer.score(payment(f"c-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with risk_engine.begin() as conn:
            await conn.execute(
                text("UPDATE risk.decisions SET decision = 'APPROVE' WHERE id = :id"),
                {"id": decision.decision_id},
            )


async def test_the_migrations_keep_their_own_version_table(risk_engine: AsyncEngine) -> None:
    """alembic_version_risk records the risk history, apart from other services'."""
    async with risk_engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version_risk"))).one()
    assert version[0] == "0001"
