"""The rate limiter against the real Redis: shared across processes, local when Redis is gone."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from mesh.edge.ratelimit import Limit, RateLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:edge-rate:{secrets.token_hex(6)}:"


async def test_the_limit_holds_across_edge_replicas(
    redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    """Two limiters on one Redis share the bucket: 3 per minute is 3 in total."""
    one = RateLimiter(redis_client, key_prefix=prefix)
    two = RateLimiter(redis_client, key_prefix=prefix)
    limit = Limit(3, 60)
    results = [await limiter.hit("login", "10.0.0.1", limit) for limiter in (one, two, one, two)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert 1 <= results[-1].retry_after <= 20
    assert (await one.hit("login", "10.0.0.2", limit)).allowed
    ttl = await redis_client.pttl(f"{prefix}login:10.0.0.1")
    assert 0 < ttl <= 60_000


async def test_a_refusal_says_when_to_retry(redis_client: redis.asyncio.Redis, prefix: str) -> None:
    """1 per 10 s: the second request is told to wait about 10 seconds."""
    limiter = RateLimiter(redis_client, key_prefix=prefix)
    assert (await limiter.hit("refresh", "ip", Limit(1, 10))).allowed
    refused = await limiter.hit("refresh", "ip", Limit(1, 10))
    assert not refused.allowed
    assert 9 <= refused.retry_after <= 10


async def test_without_redis_each_process_limits_on_its_own(prefix: str) -> None:
    """Redis unreachable: the local fallback still refuses the flood."""
    dead = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    limiter = RateLimiter(dead, key_prefix=prefix)
    limit = Limit(2, 60)
    results = [(await limiter.hit("login", "10.0.0.9", limit)).allowed for _ in range(3)]
    assert results == [True, True, False]
    await dead.aclose()
