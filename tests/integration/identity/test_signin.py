"""Signing in: tokens, one answer for unknown users and wrong passwords, lockout, rehashing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.tokens import Jwks, verify_access_token
from services.identity.adapters.keyring import Keyring
from services.identity.adapters.passwords import Argon2Passwords, Argon2Settings
from services.identity.adapters.signing_keys import RotatingKeySet
from services.identity.app import Identity, IdentityConfig, assemble
from services.identity.domain.errors import (
    INVALID_CREDENTIALS_MESSAGE,
    AccountLocked,
    InvalidCredentials,
    InvalidRequest,
)
from services.identity.domain.model import Role
from services.identity.domain.sessions import REFRESH_TOKEN_PREFIX
from services.identity.service_layer.ports import RequestInfo
from tests.support.clock import SteppingClock

from .conftest import FAST_ARGON2, NO_REQUEST, PASSWORD, new_email, rows, sign_up

pytestmark = pytest.mark.integration

WRONG = "not the password at all"
Build = Callable[[Argon2Passwords], Identity]


class CountingPasswords(Argon2Passwords):
    """argon2id, counting the verifications it does (real ones and dummy ones)."""

    def __init__(self) -> None:
        super().__init__(FAST_ARGON2)
        self.verifications = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return await super().verify(password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        self.verifications += 1
        await super().verify_dummy(password)


@pytest.fixture
def build(
    identity_engine: AsyncEngine,
    identity_redis: redis.asyncio.Redis,
    keys: RotatingKeySet,
    keyring: Keyring,
    config: IdentityConfig,
    clock: SteppingClock,
) -> Build:
    """The service with another password hasher."""

    def make(passwords: Argon2Passwords) -> Identity:
        return assemble(
            identity_engine, identity_redis, keys, keyring, config, passwords=passwords, clock=clock
        )

    return make


async def test_a_customer_signs_in_and_gets_an_access_token_the_verifier_accepts(
    identity: Identity, clock: SteppingClock
) -> None:
    """Login: a 15-minute ES256 token naming user, customer and session, and a refresh token."""
    person = await sign_up(identity)
    pair = await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    now = clock.now()
    jwks = Jwks.from_dicts(identity.tokens.public_keys(now))
    claims = verify_access_token(
        pair.access_token,
        jwks,
        issuer="https://identity.bankmesh.local",
        audience="https://api.bankmesh.local",
        now=now.timestamp(),
    )
    assert claims.subject == str(person.user_id)
    assert claims.customer_id == str(person.customer_id)
    assert claims.roles == {"customer"}
    assert claims.session_id == str(pair.session_id)
    assert pair.expires_in == 900
    assert pair.refresh_token.startswith(REFRESH_TOKEN_PREFIX)
    assert 30 * 86400 - 5 <= pair.refresh_expires_in <= 30 * 86400


async def test_the_email_signs_in_whatever_its_case_and_spaces(identity: Identity) -> None:
    """Signed up as alice@..., ' ALICE@... ' signs in too."""
    person = await sign_up(identity)
    pair = await identity.auth.login(f"  {person.email.upper()} ", PASSWORD, NO_REQUEST)
    assert pair.access_token


async def test_an_unknown_email_and_a_wrong_password_get_the_same_answer_and_the_same_work(
    build: Build,
) -> None:
    """Same error, same message, and exactly one argon2id verification in both cases."""
    passwords = CountingPasswords()
    identity = build(passwords)
    person = await sign_up(identity)
    answers = []
    for email, password in ((new_email(), PASSWORD), (person.email, WRONG)):
        passwords.verifications = 0
        with pytest.raises(InvalidCredentials) as caught:
            await identity.auth.login(email, password, NO_REQUEST)
        answers.append((type(caught.value), caught.value.reason, caught.value.message))
        assert passwords.verifications == 1
    assert answers[0] == answers[1]
    assert answers[0][2] == INVALID_CREDENTIALS_MESSAGE


async def test_an_unknown_email_takes_as_long_as_a_wrong_password(build: Build) -> None:
    """With real argon2id costs the answers take alike long; skipping the hash would be ~10x."""
    settings = Argon2Settings(time_cost=2, memory_kib=19 * 1024, parallelism=1)
    identity = build(Argon2Passwords(settings.parameters()))
    people = [await sign_up(identity) for _ in range(3)]

    async def timed(email: str) -> float:
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials):
            await identity.auth.login(email, WRONG, NO_REQUEST)
        return time.perf_counter() - started

    unknown, known = [], []
    for _ in range(4):  # fewer than the lockout threshold for each known email
        for person in people:
            unknown.append(await timed(new_email()))
            known.append(await timed(person.email))
    # The fastest of interleaved runs is the cost itself; slower ones measure how busy
    # the machine is. A factor of 2 allows for that and still fails a missing dummy hash.
    ratio = min(unknown) / min(known)
    assert 1 / 2 < ratio < 2


async def test_five_failures_lock_sign_in_even_for_the_right_password(
    identity: Identity, clock: SteppingClock
) -> None:
    """The fifth wrong password locks the email for 15 minutes; then it works again."""
    person = await sign_up(identity)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await identity.auth.login(person.email, WRONG, NO_REQUEST)
    with pytest.raises(AccountLocked) as caught:
        await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    assert 890 <= caught.value.retry_after_seconds <= 900
    clock.advance(899)
    with pytest.raises(AccountLocked):
        await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    clock.advance(2)
    assert (await identity.auth.login(person.email, PASSWORD, NO_REQUEST)).access_token


async def test_a_success_clears_the_count_of_failures(identity: Identity) -> None:
    """Four failures, a success, four failures: not locked (the failures must be consecutive)."""
    person = await sign_up(identity)
    for _ in range(2):
        for _ in range(4):
            with pytest.raises(InvalidCredentials):
                await identity.auth.login(person.email, WRONG, NO_REQUEST)
        await identity.auth.login(person.email, PASSWORD, NO_REQUEST)


async def test_an_email_nobody_has_locks_exactly_like_a_real_one(identity: Identity) -> None:
    """A lock is no oracle: unknown emails lock after five failures too."""
    email = new_email()
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await identity.auth.login(email, WRONG, NO_REQUEST)
    with pytest.raises(AccountLocked):
        await identity.auth.login(email, WRONG, NO_REQUEST)


async def test_concurrent_failures_all_count(identity: Identity) -> None:
    """Ten wrong passwords at once cannot slip past the lock by racing each other."""
    person = await sign_up(identity)
    results = await asyncio.gather(
        *(identity.auth.login(person.email, WRONG, NO_REQUEST) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, InvalidCredentials | AccountLocked) for r in results)
    with pytest.raises(AccountLocked):
        await identity.auth.login(person.email, PASSWORD, NO_REQUEST)


async def test_a_hash_with_old_parameters_is_replaced_at_the_next_sign_in(
    build: Build, identity_engine: AsyncEngine
) -> None:
    """Raising the argon2id cost upgrades each user's hash when they next sign in."""
    weak = build(Argon2Passwords(FAST_ARGON2))
    person = await sign_up(weak)
    stronger = Argon2Settings(time_cost=2, memory_kib=19 * 1024, parallelism=1)
    upgraded = build(Argon2Passwords(stronger.parameters()))
    query = "SELECT password_hash FROM identity.users WHERE id = :id"
    ((before,),) = await rows(identity_engine, query, id=person.user_id)
    assert before.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    await upgraded.auth.login(person.email, PASSWORD, NO_REQUEST)
    ((after,),) = await rows(identity_engine, query, id=person.user_id)
    assert after.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await upgraded.auth.login(person.email, PASSWORD, NO_REQUEST)).access_token


async def test_missing_credentials_are_a_malformed_request(identity: Identity) -> None:
    """An empty email or password is INVALID_ARGUMENT naming the field, not a failed sign-in."""
    for email, password, field in (("", PASSWORD, "email"), (new_email(), "", "password")):
        with pytest.raises(InvalidRequest) as caught:
            await identity.auth.login(email, password, NO_REQUEST)
        assert caught.value.field == field


async def test_sign_ins_are_security_events_with_who_what_when_where_and_outcome(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """Success, failure and the lock are recorded with user, UTC time, client IP and result."""
    person = await sign_up(identity)
    request = RequestInfo(client_ip="203.0.113.9", request_id=f"req-{uuid.uuid4().hex[:8]}")
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await identity.auth.login(person.email, WRONG, request)
    with pytest.raises(AccountLocked):
        await identity.auth.login(person.email, PASSWORD, request)
    events = await rows(
        identity_engine,
        "SELECT event, outcome, actor, user_id, client_ip, request_id, occurred_at, details"
        " FROM identity.security_events WHERE request_id = :r ORDER BY seq",
        r=request.request_id,
    )
    summary = [(e.event, e.outcome) for e in events]
    assert summary == [("sign_in", "failure")] * 5 + [
        ("account_locked", "denied"),
        ("sign_in", "denied"),
    ]
    assert all(e.user_id == person.user_id and e.client_ip == "203.0.113.9" for e in events)
    # timestamptz: an absolute instant, whatever the reader's time zone.
    assert all(abs(e.occurred_at - identity.clock.now()) < timedelta(seconds=30) for e in events)
    assert events[0].details["reason"] == "credentials"

    other = await sign_up(identity)
    pair = await identity.auth.login(other.email, PASSWORD, request)
    ((success,),) = [
        await rows(
            identity_engine,
            "SELECT event, outcome, actor, session_id, client_ip FROM identity.security_events"
            " WHERE user_id = :u AND event = 'sign_in'",
            u=other.user_id,
        )
    ]
    assert tuple(success) == (
        "sign_in",
        "success",
        str(other.user_id),
        pair.session_id,
        "203.0.113.9",
    )


async def test_staff_sign_in_with_their_roles_and_no_customer(identity: Identity) -> None:
    """A staff user's token carries their roles and an empty cid."""
    email = new_email()
    staff = await identity.directory.create_staff_user(
        "test", email, PASSWORD, [Role.SUPPORT, Role.AUDITOR]
    )
    pair = await identity.auth.login(email, PASSWORD, NO_REQUEST)
    jwks = Jwks.from_dicts(identity.tokens.public_keys(identity.clock.now()))
    claims = verify_access_token(
        pair.access_token,
        jwks,
        issuer="https://identity.bankmesh.local",
        audience="https://api.bankmesh.local",
        now=identity.clock.now().timestamp(),
    )
    assert claims.subject == str(staff.id)
    assert claims.customer_id == ""
    assert claims.roles == {"support", "auditor"}
