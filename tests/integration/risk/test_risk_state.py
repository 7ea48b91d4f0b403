"""The Redis script against its specification, under concurrency, and its TTLs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio

from services.risk.adapters.redis_state import RedisState
from services.risk.adapters.ruleset_file import RiskConfig
from services.risk.domain.history import InMemoryState, StateParams
from services.risk.domain.model import GeoPoint, Transaction
from services.risk.service_layer.scoring import RiskScorer
from services.risk.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.integration


def recent(txn: Transaction, shift: timedelta) -> Transaction:
    return replace(txn, occurred_at=txn.occurred_at + shift)


async def test_the_redis_script_matches_the_in_memory_specification(
    state: RedisState, risk_config: RiskConfig
) -> None:
    """Replaying one synthetic stream through both gives identical snapshots, every time.

    Training computes features from InMemoryState and serving from Redis: this
    is what keeps the two from drifting apart.
    """
    stream = generate(SyntheticConfig(seed=3, customers=60, days=10))
    # Move the stream to end now, so Redis's wall-clock TTLs and the specification's
    # event-time TTLs agree (no key outlives its data in either).
    shift = datetime.now(UTC) - stream[-1].txn.occurred_at
    memory = InMemoryState(StateParams.from_settings(risk_config.ruleset.state))
    for item in stream:
        txn = recent(item.txn, shift)
        assert await state.observe(txn) == memory.observe(txn), txn.transaction_id
    assert len(stream) > 500


def burst(n: int) -> list[Transaction]:
    """n transactions of one account within the same millisecond.

    Windows count by event time at millisecond resolution, so a burst that
    straddled a millisecond boundary would let a later-stamped transaction
    that happened to arrive first be counted apart from an earlier-stamped
    one: one millisecond keeps the counts a matter of arrival order alone.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        Transaction(
            transaction_id=f"burst-{i}",
            customer_id="busy",
            source_account_id="acc-busy",
            destination_account_id=f"acc-payee-{i % 7}",
            amount=1_00 + i,
            currency="EUR",
            occurred_at=now + timedelta(microseconds=i),
            device_id="busy-phone",
            geo=GeoPoint(48.85, 2.35),
        )
        for i in range(n)
    ]


async def test_a_hundred_concurrent_scorings_of_one_account_count_exactly_a_hundred(
    scorer: RiskScorer, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """No lost updates: 100 entries in Redis, and each call saw a distinct prior count."""
    txns = burst(100)
    decisions = await asyncio.gather(*(scorer.score(t) for t in txns))
    assert not any(d.fallback for d in decisions)
    assert await redis_client.zcard(f"{key_prefix}v1:vs:acc-busy") == 100
    assert await redis_client.zcard(f"{key_prefix}v1:vd:busy-phone") == 100
    counts = sorted(int(d.features["src_count_60s"]) for d in decisions)
    assert counts == list(range(1, 101))
    total = sum(t.amount for t in txns) / 100
    assert max(d.features["src_amount_86400s"] for d in decisions) == pytest.approx(total)


async def test_every_key_the_script_writes_has_a_ttl(
    state: RedisState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """All eight kinds of key exist after one transaction, and none lives forever."""
    await state.observe(burst(1)[0])
    keys = [key async for key in redis_client.scan_iter(match=f"{key_prefix}*")]
    kinds = {key.decode().removeprefix(f"{key_prefix}v1:").split(":")[0] for key in keys}
    assert kinds == {"vs", "vd", "vt", "dv", "py", "am", "geo", "tx"}
    for key in keys:
        assert await redis_client.pttl(key) > 0, key


async def test_a_retried_transaction_is_answered_from_its_marker_without_counting_again(
    state: RedisState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """The same transaction id twice: one snapshot, one entry."""
    first, second = burst(2)
    await state.observe(first)
    snapshot = await state.observe(second)
    assert await state.observe(second) == snapshot
    assert await redis_client.zcard(f"{key_prefix}v1:vs:acc-busy") == 2


async def test_an_unreachable_redis_raises_state_unavailable_quickly(
    risk_config: RiskConfig,
) -> None:
    """A closed port fails at once rather than hanging the request."""
    from services.risk.app import create_redis, redis_state
    from services.risk.service_layer.ports import StateUnavailable

    client = create_redis("redis://127.0.0.1:1/0")
    unreachable = redis_state(client, risk_config, "test:unreachable:")
    started = time.perf_counter()
    with pytest.raises(StateUnavailable):
        await unreachable.observe(burst(1)[0])
    print(f"refused after {1000 * (time.perf_counter() - started):.1f} ms")
    assert not await unreachable.ping()
    await client.aclose()
