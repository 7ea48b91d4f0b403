"""`python -m services.identity.cli`: the identity service's keys and staff users.

`app` is a typer application, so the `bankmesh` command can mount it:

    keys rotate        a new access-token signing key, published at once and
                       signing after --activate-after-seconds (600); the previous
                       ones keep verifying for --overlap-seconds (at least 960)
    keys list          signing keys with their state; data keys and, with a
                       database, how many ciphertexts each protects
    keys retire        delete the private keys whose overlap has passed
    keys rotate-data   a new data key for personal data (new writes use it)
    keys rewrap-data   re-encrypt every customer under the newest data key
    users add-staff    a staff user (support, auditor, admin, reviewer)

Every key operation is an event of the identity service's audit log
(services.common.audit) when the database is given (--database-url or
BANKMESH_DATABASE_URL); without it the command says that it went unrecorded.

Directories default to BANKMESH_IDENTITY_KEY_DIR / BANKMESH_IDENTITY_DATA_KEYS,
else to `.bankmesh/identity-keys` and `.bankmesh/identity-data-keys` (what a
local `bankmesh up` uses). Running services pick up a rotated key on their own
within seconds; run `keys rewrap-data` after that. Nothing here ever prints a
key, a password or personal data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.common.audit.events import AuditEvent, Outcome
from services.common.database import create_engine
from services.identity.adapters.keyring import (
    UnsafeKeyMaterial,
    add_data_key,
    create_file_keyring,
    data_key_ids,
    load_file_keyring,
)
from services.identity.adapters.passwords import Argon2Passwords, Argon2Settings
from services.identity.adapters.pii import AesGcmVault
from services.identity.adapters.signing_keys import (
    DEFAULT_ACTIVATE_AFTER_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    KeyDirectory,
)
from services.identity.adapters.unit_of_work import SqlUnitOfWork
from services.identity.domain.errors import IdentityError
from services.identity.domain.model import Role
from services.identity.service_layer.directory import Directory
from services.identity.service_layer.ports import SystemClock
from services.identity.service_layer.rewrap import ciphertexts_by_key, rewrap_personal_data

app = typer.Typer(
    help="Keys and staff users of the identity service.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Signing keys and data keys.", no_args_is_help=True)
users_app = typer.Typer(help="Staff users.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
console = Console()
err_console = Console(stderr=True)

KeyDir = Annotated[
    Path,
    typer.Option(
        "--key-dir", envvar="BANKMESH_IDENTITY_KEY_DIR", help="The signing key directory."
    ),
]
DataKeys = Annotated[
    Path,
    typer.Option(
        "--data-keys", envvar="BANKMESH_IDENTITY_DATA_KEYS", help="The data key directory."
    ),
]
DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="BANKMESH_DATABASE_URL",
        help="libpq URL of the identity database.",
    ),
]
DEFAULT_KEY_DIR = Path(".bankmesh/identity-keys")
DEFAULT_DATA_KEYS = Path(".bankmesh/identity-data-keys")
ACTOR = "operator:cli"


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(1)


def _insecure_dev() -> bool:
    return os.environ.get("BANKMESH_INSECURE_DEV") == "1"


def _audit(database_url: str, action: str, subject: str, details: dict[str, str]) -> None:
    """Record a key operation in the identity audit log, or say that it went unrecorded."""
    if not database_url:
        err_console.print(
            f"[yellow]warning:[/yellow] {action} of {subject} is not in the audit log: "
            "pass --database-url (or BANKMESH_DATABASE_URL) of the identity database",
            soft_wrap=True,
        )
        return
    event = AuditEvent(
        action, Outcome.SUCCESS, datetime.now(UTC), ACTOR, subject, f"pid:{os.getpid()}", details
    )
    asyncio.run(_append(database_url, event))


async def _append(database_url: str, event: AuditEvent) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with SqlUnitOfWork(engine) as uow:
            uow.audit.add(event)
            await uow.commit()
    finally:
        await engine.dispose()


# -- signing keys --------------------------------------------------------------------------


@keys_app.command("rotate")
def rotate(
    key_dir: KeyDir = DEFAULT_KEY_DIR,
    overlap_seconds: Annotated[
        int,
        typer.Option(help="How long the previous keys keep verifying once it signs (>= 960)."),
    ] = DEFAULT_OVERLAP_SECONDS,
    activate_after_seconds: Annotated[
        int,
        typer.Option(help="Publish the key this long before it signs (>= the JWKS refresh)."),
    ] = DEFAULT_ACTIVATE_AFTER_SECONDS,
    database_url: DatabaseUrl = "",
) -> None:
    """Add a signing key: published now, signing after the delay; the old ones verify on."""
    directory = KeyDirectory(key_dir)
    now = datetime.now(UTC)
    try:
        if directory.initialize(now):
            typer.echo(f"created the first signing key in {key_dir}; it signs from now on")
            _audit(database_url, "signing_key.created", "signing-keys", {})
            return
        kid = directory.rotate(now, overlap_seconds, activate_after_seconds)
    except (UnsafeKeyMaterial, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    _audit(
        database_url,
        "signing_key.rotated",
        f"kid:{kid}",
        {
            "activate_after_seconds": str(activate_after_seconds),
            "overlap_seconds": str(overlap_seconds),
        },
    )
    typer.echo(
        f"signing key {kid} is published and signs in {activate_after_seconds} s; "
        f"earlier keys verify for {overlap_seconds} s after that"
    )


@keys_app.command("retire")
def retire(key_dir: KeyDir = DEFAULT_KEY_DIR, database_url: DatabaseUrl = "") -> None:
    """Delete the private keys of signing keys whose overlap window has passed."""
    try:
        retired = KeyDirectory(key_dir).retire(datetime.now(UTC))
    except (UnsafeKeyMaterial, OSError) as exc:
        raise _fail(str(exc)) from exc
    for kid in retired:
        _audit(database_url, "signing_key.retired", f"kid:{kid}", {})
    typer.echo(f"retired {', '.join(retired)}" if retired else "no key is due for retirement")


@keys_app.command("list")
def list_keys(
    key_dir: KeyDir = DEFAULT_KEY_DIR,
    data_keys: DataKeys = DEFAULT_DATA_KEYS,
    database_url: DatabaseUrl = "",
) -> None:
    """Signing keys and their state; data keys, with ciphertext counts given a database."""
    now = datetime.now(UTC)
    signing = Table(
        "kid", "state", "signs from (UTC)", "verifies until (UTC)", title="signing keys"
    )
    try:
        states = KeyDirectory(key_dir).states(now)
    except (UnsafeKeyMaterial, OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    for info, state in states:
        signing.add_row(
            info.kid,
            state,
            f"{info.active_from:%Y-%m-%d %H:%M:%S}",
            f"{info.retire_at:%Y-%m-%d %H:%M:%S}" if info.retire_at else "",
        )
    console.print(signing)
    ids = data_key_ids(data_keys) if data_keys.is_dir() else []
    usage = asyncio.run(_usage(database_url)) if database_url else {}
    data = Table("data key", "use", "ciphertexts", title="data keys")
    for key_id in sorted(set(ids) | set(usage)):
        use = "encrypts" if ids and key_id == max(ids) else "decrypts"
        if key_id not in ids:
            use = "MISSING from the keyring"
        data.add_row(str(key_id), use, str(usage.get(key_id, 0)) if database_url else "?")
    console.print(data)


async def _usage(database_url: str) -> dict[int, int]:
    engine = create_engine(database_url, pool_size=1)
    try:
        return await ciphertexts_by_key(lambda: SqlUnitOfWork(engine))
    finally:
        await engine.dispose()


# -- data keys -----------------------------------------------------------------------------


@keys_app.command("rotate-data")
def rotate_data(data_keys: DataKeys = DEFAULT_DATA_KEYS, database_url: DatabaseUrl = "") -> None:
    """Add a data key; new personal data is encrypted with it, old data still decrypts."""
    try:
        if create_file_keyring(data_keys):
            typer.echo(f"created data key 1 and the blind-index key in {data_keys}")
            _audit(database_url, "data_key.created", "data-key:1", {})
            return
        key_id = add_data_key(data_keys)
    except (UnsafeKeyMaterial, OSError) as exc:
        raise _fail(str(exc)) from exc
    _audit(database_url, "data_key.added", f"data-key:{key_id}", {})
    typer.echo(f"data key {key_id} now encrypts new personal data")
    typer.echo("then run `keys rewrap-data` to re-encrypt what older keys protect")


@keys_app.command("rewrap-data")
def rewrap_data(data_keys: DataKeys = DEFAULT_DATA_KEYS, database_url: DatabaseUrl = "") -> None:
    """Re-encrypt every customer's personal data under the newest data key."""
    if not database_url:
        raise _fail("set --database-url (or BANKMESH_DATABASE_URL) to the identity database")
    try:
        keyring = load_file_keyring(data_keys, insecure_dev=_insecure_dev())
    except (UnsafeKeyMaterial, OSError) as exc:
        raise _fail(str(exc)) from exc
    report = asyncio.run(_rewrap(database_url, AesGcmVault(keyring)))
    typer.echo(f"re-encrypted {report[0]} customers under data key {keyring.current_data_key_id}")
    for key_id, count in sorted(report[1].items()):
        typer.echo(f"data key {key_id}: {count} ciphertexts")


async def _rewrap(database_url: str, vault: AesGcmVault) -> tuple[int, dict[int, int]]:
    engine = create_engine(database_url, pool_size=1)
    try:
        report = await rewrap_personal_data(
            lambda: SqlUnitOfWork(engine), vault, SystemClock(), actor=ACTOR
        )
    finally:
        await engine.dispose()
    return report.rows_rewritten, report.ciphertexts_by_key


# -- staff users ---------------------------------------------------------------------------


@users_app.command("add-staff")
def add_staff(
    email: Annotated[str, typer.Option(help="The email the user signs in with.")],
    role: Annotated[
        list[Role], typer.Option(help="support, auditor, admin or reviewer; repeatable.")
    ],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="BANKMESH_IDENTITY_NEW_PASSWORD",
            help="At least 12 characters; asked for when not given.",
        ),
    ],
    data_keys: DataKeys = DEFAULT_DATA_KEYS,
    database_url: DatabaseUrl = "",
) -> None:
    """Create a staff user who signs in with EMAIL."""
    if not database_url:
        raise _fail("set --database-url (or BANKMESH_DATABASE_URL) to the identity database")
    try:
        keyring = load_file_keyring(data_keys, insecure_dev=_insecure_dev())
    except (UnsafeKeyMaterial, OSError) as exc:
        raise _fail(str(exc)) from exc
    try:
        user_id = asyncio.run(_add_staff(database_url, AesGcmVault(keyring), email, password, role))
    except IdentityError as exc:
        raise _fail(f"{exc.reason.value}: {exc.message}") from exc
    typer.echo(user_id)


class _NothingToRevoke:
    """Creating a user ends no session, so this command needs no Redis."""

    async def revoke(self, session_ids: Sequence[uuid.UUID]) -> None:
        raise AssertionError("creating a staff user never revokes sessions")


async def _add_staff(
    database_url: str, vault: AesGcmVault, email: str, password: str, roles: list[Role]
) -> str:
    engine = create_engine(database_url, pool_size=1)
    try:
        directory = Directory(
            lambda: SqlUnitOfWork(engine),
            Argon2Passwords(Argon2Settings.from_env().parameters()),
            vault,
            _NothingToRevoke(),
            SystemClock(),
        )
        user = await directory.create_staff_user(ACTOR, email, password, roles)
    finally:
        await engine.dispose()
    return str(user.id)


if __name__ == "__main__":
    app()
