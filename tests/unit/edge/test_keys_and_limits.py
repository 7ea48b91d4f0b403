"""The key ring's refresh policy and the rate limiter's arithmetic, without Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import pytest

from mesh.edge.auth import AccessTokenVerifier, Authenticator, Jwk, KeyRing
from mesh.edge.errors import EdgeError
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


# -- on-demand refreshes: a ring behind identity, or not loaded yet -----------------------


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_session_ended(session_id: str) -> bool:
    return False


def authenticator(ring: KeyRing) -> Authenticator:
    return Authenticator(ring, AccessTokenVerifier(), no_session_ended)


async def test_on_demand_refreshes_are_rate_limited_and_shared() -> None:
    """However many callers ask, identity sees one GetJwks per interval."""
    clock = SteppedClock()
    source = Source()
    source.answers = [[K1]]
    ring = KeyRing(source, min_refresh_interval=5.0, clock=clock)
    assert all(await asyncio.gather(*(ring.refresh_on_demand() for _ in range(10))))
    assert source.calls == 1
    clock.now += 4.9
    assert not await ring.refresh_on_demand()
    assert source.calls == 1
    clock.now += 0.2
    assert await ring.refresh_on_demand()
    assert source.calls == 2


async def test_a_token_signed_with_a_key_identity_just_rotated_in_is_accepted() -> None:
    """The ring knows k1; identity now signs with k2: one refresh, and the customer gets in."""
    old, new = TokenIssuer("k1"), TokenIssuer("k2")
    source = Source()
    source.answers = [[old.jwk()]]
    ring = KeyRing(source, clock=SteppedClock())
    await ring.refresh()
    source.answers = [[old.jwk(), new.jwk()]]
    verified = await authenticator(ring).authenticate(
        f"Bearer {new.customer('c-1')}", mutating=True
    )
    assert verified.user.customer_id == "c-1"
    assert ring.jwks.kids == {"k1", "k2"}
    assert source.calls == 2


async def test_made_up_kids_cost_identity_one_fetch_per_interval_and_are_refused() -> None:
    forger = TokenIssuer("not-published")
    source = Source()
    source.answers = [[K1]]
    ring = KeyRing(source, clock=SteppedClock())
    await ring.refresh()
    auth = authenticator(ring)
    for _ in range(20):
        with pytest.raises(EdgeError) as refused:
            await auth.authenticate(f"Bearer {forger.customer('c-1')}", mutating=False)
        assert refused.value.wire.code is grpc.StatusCode.UNAUTHENTICATED
    assert source.calls == 2  # the first refresh, then one on demand


async def test_before_any_key_is_loaded_a_token_is_a_503_to_retry_not_a_401() -> None:
    """A freshly started edge that cannot reach identity must not sign customers out."""
    issuer = TokenIssuer("k1")
    source = Source()
    source.answers = [ConnectionError("identity not up yet")]
    ring = KeyRing(source, clock=SteppedClock())
    with pytest.raises(EdgeError) as refused:
        await authenticator(ring).authenticate(f"Bearer {issuer.customer('c-1')}", mutating=True)
    assert refused.value.wire.code is grpc.StatusCode.UNAVAILABLE
    assert refused.value.wire.reason == "DEPENDENCY_UNAVAILABLE"
    source.answers = [[issuer.jwk()]]
    await ring.refresh()
    verified = await authenticator(ring).authenticate(
        f"Bearer {issuer.customer('c-1')}", mutating=True
    )
    assert verified.user.customer_id == "c-1"
