"""The key ring's refresh policy and the rate limiter's arithmetic, without Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mesh.edge.auth import Jwk, KeyRing
from mesh.edge.ratelimit import Limit, LocalLimiter, RateLimiter, rules_from_env
from tests.unit.edge.signing import TokenIssuer

K1, K2 = TokenIssuer("k1").jwk(), TokenIssuer("k2").jwk()


class Source:
    def __init__(self) -> None:
        self.answers: list[Sequence[Jwk] | Exception] = []
        self.calls = 0

    async def __call__(self) -> Sequence[Jwk]:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_failed_refresh_keeps_the_keys_and_a_new_set_replaces_them() -> None:
    """An identity outage does not empty the ring; a retired kid is gone after the next refresh."""
    source = Source()
    source.answers = [[K1, K2], ConnectionError("identity down"), [K2]]
    ring = KeyRing(source)
    assert await ring.refresh()
    assert not await ring.refresh()
    assert ring.jwks.kids == {"k1", "k2"}
    assert "identity down" in ring.last_error
    assert await ring.refresh()
    assert ring.jwks.kids == {"k2"}


async def test_a_key_set_that_does_not_parse_is_not_taken() -> None:
    """A JWKS with a private part, a foreign curve or a bad kid keeps the previous set."""
    source = Source()
    ring = KeyRing(source)
    source.answers = [[K1]]
    assert await ring.refresh()
    for bad in ({**K2, "d": "secret"}, {**K2, "crv": "P-384"}, {**K2, "kid": "../x"}):
        source.answers = [[bad]]
        assert not await ring.refresh()
        assert ring.jwks.kids == {"k1"}


async def test_the_ring_refreshes_periodically_not_per_token() -> None:
    """run() asks the source again every interval (quickly while it has no keys)."""
    source = Source()
    source.answers = [ConnectionError("not yet"), [K1]]
    ring = KeyRing(source, refresh_interval=0.05, retry_interval=0.01)
    task = asyncio.create_task(ring.run())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ring.jwks.kids == {"k1"}
    assert 3 <= source.calls <= 8


def test_a_limit_allows_its_burst_then_one_per_interval() -> None:
    """3 per 3 s: three at once, the fourth waits a second, then one more gets through."""
    now = [100.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    limit = Limit(3, 3)
    assert [limiter.hit("k", limit).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.hit("k", limit)
    assert (refused.allowed, refused.retry_after) == (False, 1)
    now[0] += 1.0
    assert limiter.hit("k", limit).allowed
    assert not limiter.hit("k", limit).allowed
    assert limiter.hit("other", limit).allowed


def test_the_local_limiter_forgets_the_oldest_clients_first() -> None:
    """Memory is bounded: past max_keys the least recently seen key is dropped."""
    limiter = LocalLimiter(clock=lambda: 0.0, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.hit(key, Limit(1, 60))
    assert limiter.hit("a", Limit(1, 60)).allowed
    assert not limiter.hit("c", Limit(1, 60)).allowed


async def test_without_redis_the_limiter_limits_in_process() -> None:
    """RateLimiter(None) is the local fallback on its own."""
    limiter = RateLimiter(None)
    assert (await limiter.hit("login", "1.2.3.4", Limit(1, 60))).allowed
    assert not (await limiter.hit("login", "1.2.3.4", Limit(1, 60))).allowed


def test_the_first_request_is_allowed_whatever_the_clock_reads() -> None:
    """A clock value where float rounding once refused a client's very first request."""
    limiter = LocalLimiter(clock=lambda: 21.060533511106925)
    assert limiter.hit("login:1.2.3.4", Limit(1, 60)).allowed
    assert not limiter.hit("login:1.2.3.4", Limit(1, 60)).allowed


def test_limits_are_configured_as_count_per_seconds() -> None:
    """BANKMESH_EDGE_RATE_LOGIN=5/30 sets the login limit; nonsense is refused."""
    rules = rules_from_env({"BANKMESH_EDGE_RATE_LOGIN": "5/30"})
    assert rules["/bankmesh.identity.v1.IdentityService/Login"].limit == Limit(5, 30)
    with pytest.raises(ValueError, match="not a limit"):
        Limit.parse("lots")
    with pytest.raises(ValueError, match="not a limit"):
        Limit.parse("0/10")
