"""Sessions: refresh rotation, reuse detection, races, the absolute lifetime and logout."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.tokens import (
    REVOKED_SID_TTL_SECONDS,
    FailMode,
    Jwks,
    revoked_sid_key,
    session_revoked,
    verify_access_token,
)
from services.identity.adapters.keyring import Keyring
from services.identity.adapters.passwords import Argon2Passwords
from services.identity.adapters.revocations import create_redis
from services.identity.adapters.signing_keys import RotatingKeySet
from services.identity.app import Identity, IdentityConfig, assemble
from services.identity.domain.errors import (
    InvalidRequest,
    RefreshRefused,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
)
from services.identity.domain.model import Role
from services.identity.service_layer.ports import DependencyUnavailable, RequestInfo
from services.identity.service_layer.signin import TokenPair
from tests.support.clock import SteppingClock

from .conftest import NO_REQUEST, PASSWORD, new_email, rows, sign_up

pytestmark = pytest.mark.integration

# Nothing listens here: a Redis that is down.
DEAD_REDIS = "redis://127.0.0.1:1/0"


async def signed_in(identity: Identity) -> TokenPair:
    person = await sign_up(identity)
    return await identity.auth.login(person.email, PASSWORD, NO_REQUEST)


async def session_row(engine: AsyncEngine, pair: TokenPair) -> tuple[object, str]:
    ((ended_at, reason),) = await rows(
        engine,
        "SELECT ended_at, end_reason FROM identity.sessions WHERE id = :id",
        id=pair.session_id,
    )
    return ended_at, reason


# -- rotation -----------------------------------------------------------------------------


async def test_a_refresh_returns_a_new_pair_and_spends_the_old_token(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """RefreshToken rotates: a new refresh token, a new access token, same session."""
    first = await signed_in(identity)
    second = await identity.auth.refresh(first.refresh_token, NO_REQUEST)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.session_id == first.session_id
    spent = await rows(
        identity_engine,
        "SELECT used_at FROM identity.refresh_tokens WHERE token_hash = :h",
        h=hashlib.sha256(first.refresh_token.encode()).digest(),
    )
    assert spent[0].used_at is not None
    third = await identity.auth.refresh(second.refresh_token, NO_REQUEST)
    assert third.session_id == first.session_id


async def test_refresh_tokens_are_stored_only_as_their_sha256(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """The table holds a 32-byte hash per token, never the token itself."""
    pair = await signed_in(identity)
    stored = await rows(
        identity_engine,
        "SELECT token_hash FROM identity.refresh_tokens WHERE session_id = :s",
        s=pair.session_id,
    )
    assert [bytes(row.token_hash) for row in stored] == [
        hashlib.sha256(pair.refresh_token.encode()).digest()
    ]
    found = await rows(
        identity_engine,
        "SELECT count(*) FROM identity.refresh_tokens t"
        " WHERE position(convert_to(:token, 'UTF8') in t.token_hash) > 0",
        token=pair.refresh_token,
    )
    assert found[0][0] == 0


# -- reuse ----------------------------------------------------------------------------------


async def test_reusing_a_rotated_token_revokes_the_whole_family_and_says_so(
    identity: Identity,
    identity_engine: AsyncEngine,
    identity_redis: redis.asyncio.Redis,
) -> None:
    """A spent token again: REFRESH_TOKEN_REUSED, the whole session dies, an event, Redis."""
    first = await signed_in(identity)
    second = await identity.auth.refresh(first.refresh_token, NO_REQUEST)
    request = RequestInfo(client_ip="198.51.100.23", request_id="reuse-1")
    with pytest.raises(RefreshTokenReused):
        await identity.auth.refresh(first.refresh_token, request)
    with pytest.raises(TokenInvalid):
        await identity.auth.refresh(second.refresh_token, NO_REQUEST)  # the thief's or the owner's
    ended_at, reason = await session_row(identity_engine, first)
    assert ended_at is not None and reason == "refresh_token_reused"
    events = await rows(
        identity_engine,
        "SELECT event, outcome, client_ip, occurred_at FROM identity.security_events"
        " WHERE session_id = :s AND event = 'refresh_token_reused'",
        s=first.session_id,
    )
    assert [(e.event, e.outcome, e.client_ip) for e in events] == [
        ("refresh_token_reused", "denied", "198.51.100.23")
    ]
    assert await session_revoked(identity_redis, str(first.session_id))


async def test_two_concurrent_refreshes_with_one_token_let_exactly_one_succeed(
    identity: Identity,
) -> None:
    """The session row lock serialises them: one new pair, the other a refusal."""
    pair = await signed_in(identity)
    results = await asyncio.gather(
        identity.auth.refresh(pair.refresh_token, NO_REQUEST),
        identity.auth.refresh(pair.refresh_token, NO_REQUEST),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, TokenPair)]
    losers = [r for r in results if isinstance(r, RefreshRefused)]
    assert (len(winners), len(losers)) == (1, 1)


async def test_many_concurrent_refreshes_with_one_token_still_let_exactly_one_succeed(
    identity: Identity,
) -> None:
    """Ten at once: one pair; the rest are reuse (which ends the session) or invalid."""
    pair = await signed_in(identity)
    results = await asyncio.gather(
        *(identity.auth.refresh(pair.refresh_token, NO_REQUEST) for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, TokenPair) for r in results) == 1
    assert all(isinstance(r, TokenPair | RefreshRefused) for r in results)
    assert any(isinstance(r, RefreshTokenReused) for r in results)


# -- lifetime -------------------------------------------------------------------------------


async def test_a_session_ends_thirty_days_after_sign_in_however_often_refreshed(
    identity: Identity, clock: SteppingClock
) -> None:
    """Refreshing daily does not extend the absolute lifetime: day 30 says TOKEN_EXPIRED."""
    pair = await signed_in(identity)
    for _ in range(29):
        clock.advance(86400)
        pair = await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    assert 0 < pair.refresh_expires_in <= 86400
    clock.advance(86400)
    with pytest.raises(TokenExpired):
        await identity.auth.refresh(pair.refresh_token, NO_REQUEST)


@pytest.mark.parametrize("token", ["bmrt_" + "A" * 43, "garbage", "x" * 5000, "bmrt_"])
async def test_an_unknown_or_malformed_refresh_token_is_invalid(
    identity: Identity, token: str
) -> None:
    """Tokens identity never issued are TOKEN_INVALID."""
    with pytest.raises(TokenInvalid):
        await identity.auth.refresh(token, NO_REQUEST)


async def test_an_empty_refresh_token_is_a_malformed_request(identity: Identity) -> None:
    """INVALID_ARGUMENT naming refresh_token."""
    with pytest.raises(InvalidRequest):
        await identity.auth.refresh("", NO_REQUEST)


async def test_a_refresh_carries_the_roles_the_user_has_now(identity: Identity) -> None:
    """A role assigned after sign-in appears in the next access token."""
    from .conftest import OPERATOR

    email = new_email()
    staff = await identity.directory.create_staff_user("test", email, PASSWORD, [Role.SUPPORT])
    pair = await identity.auth.login(email, PASSWORD, NO_REQUEST)
    await identity.directory.assign_role(OPERATOR, staff.id, Role.REVIEWER, NO_REQUEST)
    fresh = await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    now = identity.clock.now()
    claims = verify_access_token(
        fresh.access_token,
        Jwks.from_dicts(identity.tokens.public_keys(now)),
        issuer="https://identity.bankmesh.local",
        audience="https://api.bankmesh.local",
        now=now.timestamp(),
    )
    assert claims.roles == {"support", "reviewer"}


# -- logout ---------------------------------------------------------------------------------


async def test_logout_ends_the_session_and_its_access_tokens_at_once(
    identity: Identity,
    identity_engine: AsyncEngine,
    identity_redis: redis.asyncio.Redis,
) -> None:
    """After Logout: refresh fails, and the revoked sid is in Redis for >= 15 minutes."""
    pair = await signed_in(identity)
    await identity.auth.logout(pair.refresh_token, "", NO_REQUEST)
    with pytest.raises(TokenInvalid):
        await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    ended_at, reason = await session_row(identity_engine, pair)
    assert ended_at is not None and reason == "logout"
    key = revoked_sid_key(str(pair.session_id))
    ttl = await identity_redis.ttl(key)
    assert 900 <= ttl <= REVOKED_SID_TTL_SECONDS
    assert await session_revoked(identity_redis, str(pair.session_id))


async def test_other_sessions_of_the_same_user_survive_a_logout(
    identity: Identity, identity_redis: redis.asyncio.Redis
) -> None:
    """Logging out the phone leaves the laptop signed in."""
    person = await sign_up(identity)
    phone = await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    laptop = await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    await identity.auth.logout(phone.refresh_token, str(person.user_id), NO_REQUEST)
    assert not await session_revoked(identity_redis, str(laptop.session_id))
    assert (await identity.auth.refresh(laptop.refresh_token, NO_REQUEST)).access_token


async def test_logout_cannot_end_someone_elses_session(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """Signed in as Bob, Alice's refresh token logs nothing out (and it is recorded)."""
    alice = await signed_in(identity)
    bob = await sign_up(identity)
    await identity.auth.logout(alice.refresh_token, str(bob.user_id), NO_REQUEST)
    ended_at, _ = await session_row(identity_engine, alice)
    assert ended_at is None
    events = await rows(
        identity_engine,
        "SELECT outcome, actor FROM identity.security_events"
        " WHERE session_id = :s AND event = 'logout'",
        s=alice.session_id,
    )
    assert [(e.outcome, e.actor) for e in events] == [("denied", str(bob.user_id))]


@pytest.mark.parametrize("token", ["bmrt_" + "B" * 43, "nonsense"])
async def test_logout_with_an_unknown_token_is_not_an_error(identity: Identity, token: str) -> None:
    """RFC 7009: revoking what does not exist succeeds quietly."""
    await identity.auth.logout(token, "", NO_REQUEST)


async def test_logout_while_redis_is_down_fails_and_a_retry_publishes_it(
    identity_engine: AsyncEngine,
    identity_redis: redis.asyncio.Redis,
    keys: RotatingKeySet,
    keyring: Keyring,
    config: IdentityConfig,
    fast_passwords: Argon2Passwords,
    clock: SteppingClock,
    identity: Identity,
) -> None:
    """UNAVAILABLE while Redis is down (the session is ended already); the retry sets the key."""
    pair = await signed_in(identity)
    dead = create_redis(DEAD_REDIS)
    cut_off = assemble(
        identity_engine, dead, keys, keyring, config, passwords=fast_passwords, clock=clock
    )
    with pytest.raises(DependencyUnavailable):
        await cut_off.auth.logout(pair.refresh_token, "", NO_REQUEST)
    await dead.aclose()
    with pytest.raises(TokenInvalid):
        await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    assert not await session_revoked(identity_redis, str(pair.session_id))
    await identity.auth.logout(pair.refresh_token, "", NO_REQUEST)
    assert await session_revoked(identity_redis, str(pair.session_id))


# -- the edge's question ---------------------------------------------------------------------


async def test_session_revoked_answers_per_fail_mode_when_redis_is_down() -> None:
    """Redis unreachable: FailMode.CLOSED says revoked, FailMode.OPEN says not."""
    dead = create_redis(DEAD_REDIS)
    try:
        assert await session_revoked(dead, "any-sid")
        assert await session_revoked(dead, "any-sid", fail_mode=FailMode.CLOSED)
        assert not await session_revoked(dead, "any-sid", fail_mode=FailMode.OPEN)
    finally:
        await dead.aclose()


async def test_session_revoked_is_false_for_a_live_session(
    identity: Identity, identity_redis: redis.asyncio.Redis
) -> None:
    """A working Redis without the key: the session stands."""
    pair = await signed_in(identity)
    assert not await session_revoked(identity_redis, str(pair.session_id))
