"""Identity's security events land in its hash-chained audit log, and so do key operations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from services.common.audit.reader import verify_database
from services.identity.app import Identity
from services.identity.cli import app as cli
from services.identity.domain.errors import InvalidCredentials, RefreshTokenReused
from services.identity.service_layer.ports import RequestInfo

from .conftest import PASSWORD, sign_up

pytestmark = pytest.mark.integration


def events_about(url: str, subject: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT action, outcome, source FROM audit.events WHERE subject = %s ORDER BY seq",
                (subject,),
            )
        ]


async def test_logins_failures_refresh_reuse_and_logout_are_audited(
    identity: Identity, identity_database_url: str
) -> None:
    """A wrong password, a sign-in, a refresh, the spent token again, with where they came from."""
    person = await sign_up(identity)
    with pytest.raises(InvalidCredentials):
        await identity.auth.login(
            person.email, "not the password at all", RequestInfo(request_id="r1")
        )
    first = await identity.auth.login(person.email, PASSWORD, RequestInfo(request_id="r2"))
    await identity.auth.refresh(first.refresh_token, RequestInfo(request_id="r3"))
    with pytest.raises(RefreshTokenReused):
        await identity.auth.refresh(first.refresh_token, RequestInfo(request_id="r4"))

    events = events_about(identity_database_url, f"user:{person.user_id}")
    assert ("sign_in", "failure", "r1") in events
    assert ("sign_in", "success", "r2") in events
    assert ("refresh", "success", "r3") in events
    assert events[-1] == ("refresh_token_reused", "denied", "r4")
    assert verify_database(identity_database_url, "identity").intact


async def test_a_key_rotation_is_audited_when_the_database_is_given(
    identity_database_url: str, tmp_path: Path
) -> None:
    """`keys rotate --database-url`: the operation is a row of the identity audit log."""
    keys = str(tmp_path / "keys")
    runner = CliRunner()
    for _ in range(2):
        result = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["keys", "rotate", "--key-dir", keys, "--database-url", identity_database_url],
        )
        assert result.exit_code == 0, result.output
    with psycopg.connect(identity_database_url) as conn:
        actions = [
            row[0]
            for row in conn.execute(
                "SELECT action FROM audit.events WHERE actor = 'operator:cli' ORDER BY seq"
            )
        ]
    assert actions[-2:] == ["signing_key.created", "signing_key.rotated"]
