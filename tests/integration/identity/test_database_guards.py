"""What PostgreSQL itself refuses in the identity schema, whatever the service does."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.identity.app import Identity

from .conftest import NO_REQUEST, PASSWORD, sign_up

pytestmark = pytest.mark.integration


async def execute(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement), params)


async def test_security_events_cannot_be_altered_deleted_or_truncated(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """The event log is append-only: UPDATE, DELETE and TRUNCATE fail."""
    await sign_up(identity)
    for statement in (
        "UPDATE identity.security_events SET outcome = 'success'",
        "DELETE FROM identity.security_events",
        "TRUNCATE identity.security_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            await execute(identity_engine, statement)


async def test_a_spent_refresh_token_cannot_be_made_fresh_again(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """Clearing used_at of a spent token is refused."""
    person = await sign_up(identity)
    pair = await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    with pytest.raises(DBAPIError, match="stays spent"):
        await execute(
            identity_engine,
            "UPDATE identity.refresh_tokens SET used_at = NULL WHERE session_id = :s",
            s=pair.session_id,
        )


async def test_an_ended_session_cannot_be_revived_or_extended(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """ended_at stays, and no session's absolute expiry moves."""
    person = await sign_up(identity)
    pair = await identity.auth.login(person.email, PASSWORD, NO_REQUEST)
    with pytest.raises(DBAPIError, match="expiry fixed"):
        await execute(
            identity_engine,
            "UPDATE identity.sessions SET expires_at = expires_at + interval '1 year'"
            " WHERE id = :s",
            s=pair.session_id,
        )
    await identity.auth.logout(pair.refresh_token, "", NO_REQUEST)
    with pytest.raises(DBAPIError, match="stays ended"):
        await execute(
            identity_engine,
            "UPDATE identity.sessions SET ended_at = NULL, end_reason = '' WHERE id = :s",
            s=pair.session_id,
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE identity.users SET password_hash = 'plaintext-password' WHERE id = :u",
        "UPDATE identity.users SET password_hash = '$2b$12$bcrypt...' WHERE id = :u",
        "UPDATE identity.users SET email_index = 'alice@example.com'::bytea WHERE id = :u",
    ],
    ids=["plaintext-password", "other-kdf", "plaintext-email"],
)
async def test_users_hold_only_argon2id_hashes_and_a_32_byte_email_index(
    identity: Identity, identity_engine: AsyncEngine, statement: str
) -> None:
    """A plaintext password or email in the users table is refused."""
    person = await sign_up(identity)
    with pytest.raises(DBAPIError, match="check"):
        await execute(identity_engine, statement, u=person.user_id)
