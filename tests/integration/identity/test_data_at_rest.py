"""Personal data at rest: a raw dump shows none, rows cannot swap it, keys rotate and re-wrap."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import redis.asyncio
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from services.common.database import create_engine
from services.identity.adapters.keyring import (
    Keyring,
    ReloadingKeyring,
    StaticKeyring,
    add_data_key,
    create_file_keyring,
    load_file_keyring,
)
from services.identity.adapters.passwords import Argon2Passwords
from services.identity.adapters.pii import UndecryptableData
from services.identity.adapters.signing_keys import RotatingKeySet
from services.identity.adapters.unit_of_work import SqlUnitOfWork
from services.identity.app import (
    Identity,
    IdentityConfig,
    UnsafeConfiguration,
    assemble,
    check_keyring_covers_data,
    migrate,
)
from services.identity.cli import app as cli
from services.identity.domain.errors import NotFound
from services.identity.service_layer.rewrap import ciphertexts_by_key, rewrap_personal_data
from tests.conftest import DatabaseFactory
from tests.support.clock import SteppingClock

from .conftest import NO_REQUEST, OPERATOR, PASSWORD, rows, sign_up

pytestmark = pytest.mark.integration


def distinctive() -> dict[str, str]:
    """Values that cannot occur in a dump by chance."""
    tag = uuid.uuid4().hex[:10]
    return {
        "full_name": f"Zebulon Quixote-{tag} Marchbanks",
        "email": f"zebulon.{tag}@distinctive-mail.example",
        "phone_number": "+4915" + str(uuid.uuid4().int)[:9],
        "national_id": f"ZQX{tag.upper()}",
        "password": f"Zq-password-{tag}-long",
    }


def needles(values: dict[str, str]) -> list[str]:
    """Each value as text, in other cases, and hex-encoded (as bytea appears in a dump)."""
    found = []
    for value in values.values():
        for variant in {value, value.lower(), value.upper()}:
            found += [variant, variant.encode().hex()]
    return found


def table_dump(url: str) -> str:
    """COPY of every table of the identity schema, as a backup script would take it."""
    out = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'identity'"
        ).fetchall()
        assert len(tables) >= 7
        for (table,) in tables:
            query = sql.SQL("COPY identity.{} TO STDOUT").format(sql.Identifier(table))
            with conn.cursor().copy(query) as copy:
                out += [bytes(chunk).decode("utf-8", "replace") for chunk in copy]
    return "".join(out)


async def customer_with_tokens(identity: Identity) -> tuple[dict[str, str], list[str]]:
    values = distinctive()
    person = await sign_up(identity, **values)
    pair = await identity.auth.login(person.email, values["password"], NO_REQUEST)
    second = await identity.auth.refresh(pair.refresh_token, NO_REQUEST)
    return values, [pair.refresh_token, second.refresh_token, pair.access_token]


# -- a dump ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
async def test_a_pg_dump_of_the_identity_database_has_no_plaintext_personal_data(
    identity: Identity, identity_database_url: str
) -> None:
    """Name, email, phone, national id, password and tokens appear in no form in pg_dump."""
    values, tokens = await customer_with_tokens(identity)
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None
    dump = await asyncio.to_thread(
        subprocess.run,
        [pg_dump, "--no-owner", "--dbname", identity_database_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "COPY identity.customers" in dump.stdout
    for needle in [*needles(values), *tokens]:
        assert needle not in dump.stdout, "plaintext found in the dump"


async def test_copying_every_identity_table_out_shows_no_plaintext_personal_data(
    identity: Identity, identity_database_url: str
) -> None:
    """The same through COPY ... TO STDOUT of each table (what any reader of the data sees)."""
    values, tokens = await customer_with_tokens(identity)
    dump = await asyncio.to_thread(table_dump, identity_database_url)
    assert dump
    for needle in [*needles(values), *tokens]:
        assert needle not in dump, "plaintext found in a table"


async def test_the_database_refuses_plaintext_in_a_personal_data_column(
    identity_engine: AsyncEngine,
) -> None:
    """Only AES-GCM envelopes fit the columns: a stray plaintext INSERT fails."""
    with pytest.raises(Exception, match="check"):
        async with identity_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO identity.customers VALUES"
                    " (gen_random_uuid(), 'Alice Liddell'::bytea, 'a@b.c'::bytea,"
                    " '+15555550100'::bytea, 'AB123456'::bytea, now(), now())"
                )
            )


# -- binding to the row --------------------------------------------------------------------------


async def test_a_ciphertext_copied_into_another_customers_row_does_not_decrypt(
    identity: Identity, identity_engine: AsyncEngine
) -> None:
    """Copying Alice's email ciphertext over Mallory's: Mallory's record no longer opens."""
    alice = await sign_up(identity)
    mallory = await sign_up(identity)
    ((own,),) = await rows(
        identity_engine, "SELECT email FROM identity.customers WHERE id = :m", m=mallory.customer_id
    )
    copy = "UPDATE identity.customers SET email = :email WHERE id = :mallory"
    async with identity_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE identity.customers SET email ="
                " (SELECT email FROM identity.customers WHERE id = :alice) WHERE id = :mallory"
            ),
            {"alice": alice.customer_id, "mallory": mallory.customer_id},
        )
    try:
        with pytest.raises(UndecryptableData, match="copied"):
            await identity.directory.get_customer(OPERATOR, mallory.customer_id)
        assert (await identity.directory.get_customer(OPERATOR, alice.customer_id)).data.email
    finally:
        # Other tests sample the session's rows; leave none that cannot open.
        async with identity_engine.begin() as conn:
            await conn.execute(text(copy), {"email": own, "mallory": mallory.customer_id})
    assert (await identity.directory.get_customer(OPERATOR, mallory.customer_id)).data.email


async def test_an_unknown_customer_reads_as_missing(identity: Identity) -> None:
    """NotFound, not a decryption error, for an id nobody has."""
    with pytest.raises(NotFound):
        await identity.directory.get_customer(OPERATOR, uuid.uuid4())


# -- rotation ------------------------------------------------------------------------------------


@pytest.fixture
async def rotation_engine(databases: DatabaseFactory) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of its own: re-wrapping touches every row, and keys differ from the session's."""
    url = await asyncio.to_thread(databases.create, migrate, "identity_rotation")
    engine = create_engine(url, pool_size=2)
    yield url, engine
    await engine.dispose()


async def test_rotating_the_data_key_then_rewrapping_leaves_no_ciphertext_under_the_old_key(
    rotation_engine: tuple[str, AsyncEngine],
    identity_redis: redis.asyncio.Redis,
    keys: RotatingKeySet,
    fast_passwords: Argon2Passwords,
    clock: SteppingClock,
    tmp_path: Path,
) -> None:
    """New writes use key 2, old rows still open, and after re-wrap key 1 protects nothing."""
    _, engine = rotation_engine
    data_keys = tmp_path / "data-keys"
    create_file_keyring(data_keys)
    keyring = ReloadingKeyring(lambda: load_file_keyring(data_keys, insecure_dev=False), 0)
    config = IdentityConfig(key_dir=tmp_path / "unused", data_key_dir=data_keys)
    identity = assemble(
        engine, identity_redis, keys, keyring, config, passwords=fast_passwords, clock=clock
    )
    older = [await sign_up(identity) for _ in range(3)]
    assert await ciphertexts_by_key(lambda: SqlUnitOfWork(engine)) == {1: 12}

    assert add_data_key(data_keys) == 2
    newer = [await sign_up(identity) for _ in range(2)]
    assert await ciphertexts_by_key(lambda: SqlUnitOfWork(engine)) == {1: 12, 2: 8}
    before = {
        p.customer_id: (await identity.directory.get_customer(OPERATOR, p.customer_id)).data
        for p in [*older, *newer]
    }

    report = await rewrap_personal_data(
        lambda: SqlUnitOfWork(engine), identity.vault, clock, actor="test", batch_size=2
    )
    assert (report.key_id, report.rows_rewritten) == (2, 3)
    assert report.ciphertexts_by_key == {2: 20}
    for customer_id, data in before.items():
        assert (await identity.directory.get_customer(OPERATOR, customer_id)).data == data
    for person in older:
        assert (await identity.auth.login(person.email, PASSWORD, NO_REQUEST)).access_token
    events = await rows(
        engine,
        "SELECT details FROM identity.security_events WHERE event = 'personal_data_rewrapped'",
    )
    assert [e.details for e in events] == [{"key_id": "2", "rows": "3"}]

    # Only now may key 1 leave the ring; had it gone earlier, start-up would have refused.
    only_key_2 = StaticKeyring({2: keyring.data_key(2)}, keyring.blind_index_key())
    await check_keyring_covers_data(engine, only_key_2)
    without_key_2 = StaticKeyring({1: keyring.data_key(1)}, keyring.blind_index_key())
    with pytest.raises(UnsafeConfiguration, match="data key 2 is missing"):
        await check_keyring_covers_data(engine, without_key_2)


async def test_start_up_refuses_a_keyring_that_does_not_fit_the_data(
    identity: Identity, identity_engine: AsyncEngine, keyring: Keyring
) -> None:
    """A fresh keyring (a mistyped directory) has a key 1 too; it must not start the service."""
    await sign_up(identity)
    await check_keyring_covers_data(identity_engine, keyring)
    current = keyring.current_data_key_id
    strangers = StaticKeyring({current: os.urandom(32)}, keyring.blind_index_key())
    with pytest.raises(UnsafeConfiguration, match=f"data key {current} does not decrypt"):
        await check_keyring_covers_data(identity_engine, strangers)
    other_index = StaticKeyring({current: keyring.data_key(current)}, os.urandom(32))
    with pytest.raises(UnsafeConfiguration, match="blind-index key does not match"):
        await check_keyring_covers_data(identity_engine, other_index)


async def test_the_cli_rotates_and_rewraps_data_keys(
    rotation_engine: tuple[str, AsyncEngine],
    identity_redis: redis.asyncio.Redis,
    keys: RotatingKeySet,
    fast_passwords: Argon2Passwords,
    clock: SteppingClock,
    tmp_path: Path,
) -> None:
    """`keys rotate-data`, `keys rewrap-data` and `keys list` follow docs/identity.md."""
    url, engine = rotation_engine
    data_keys = tmp_path / "data-keys"
    runner = CliRunner()
    created = await asyncio.to_thread(
        runner.invoke, cli, ["keys", "rotate-data", "--data-keys", str(data_keys)]
    )
    assert created.exit_code == 0, created.output
    assert "created data key 1" in created.output
    keyring = ReloadingKeyring(lambda: load_file_keyring(data_keys, insecure_dev=False), 0)
    config = IdentityConfig(key_dir=tmp_path / "unused", data_key_dir=data_keys)
    identity = assemble(
        engine, identity_redis, keys, keyring, config, passwords=fast_passwords, clock=clock
    )
    await sign_up(identity)
    rotated = await asyncio.to_thread(
        runner.invoke, cli, ["keys", "rotate-data", "--data-keys", str(data_keys)]
    )
    assert "data key 2 now encrypts" in rotated.output
    rewrap = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["keys", "rewrap-data", "--data-keys", str(data_keys), "--database-url", url],
    )
    assert rewrap.exit_code == 0, rewrap.output
    assert "re-encrypted 1 customers under data key 2" in rewrap.output
    assert "data key 2: 4 ciphertexts" in rewrap.output
    listed = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["keys", "list", "--data-keys", str(data_keys), "--key-dir", str(tmp_path / "k")],
    )
    assert listed.exit_code == 0, listed.output
    assert "encrypts" in listed.output
