"""Where a mesh keeps its audit logs, and verifying them: what ``bankmesh audit`` runs.

Each audited service (account, identity, payment) has its chain in
``audit.events`` of its own database, its public key in
``<data_dir>/audit-keys/<service>.pub`` and its signed checkpoints in
``<data_dir>/audit-checkpoints/<service>.jsonl``. The database server is
DATABASE_URL when set, else the embedded PostgreSQL of the data directory
(started for the command if it is not running, and stopped again after).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mesh.runtime.errors import MeshError
from mesh.runtime.launcher import AUDIT_CHECKPOINT_DIR, AUDIT_KEY_DIR, DEFAULT_SERVICES
from mesh.runtime.postgres import start_embedded_postgres, to_libpq_url, with_database
from services.common.audit import checkpoints, reader
from services.common.audit.chain import Report

AUDITED = tuple(spec.name for spec in DEFAULT_SERVICES if spec.audited)


@dataclass(frozen=True, slots=True)
class AuditLocation:
    service: str
    database_url: str
    checkpoints: Path | None
    public_key: Path | None
    signing_key: Path | None = None


def services_to_check(service: str | None) -> Sequence[str]:
    if service is None:
        return AUDITED
    if service not in AUDITED:
        raise MeshError(
            f"{service!r} keeps no audit log", hint=f"choose one of {', '.join(AUDITED)}"
        )
    return (service,)


@contextmanager
def mesh_audit_logs(
    data_dir: Path, server_url: str | None, services: Sequence[str]
) -> Iterator[list[AuditLocation]]:
    """The audit logs of a mesh's services, with the server up for the length of the block."""
    data_dir = Path(data_dir).expanduser().resolve()
    started = None
    if not server_url:
        pgdata = data_dir / "postgres"
        if not (pgdata / "PG_VERSION").exists():
            raise MeshError(
                f"there is no embedded PostgreSQL in {pgdata}",
                hint="pass the --data-dir the mesh runs from, or set DATABASE_URL for your server",
            )
        started = start_embedded_postgres(data_dir, archive_wal=False)
        server_url = started.url
    try:
        yield [
            AuditLocation(
                service=name,
                database_url=with_database(server_url, f"bankmesh_{name}"),
                checkpoints=data_dir / AUDIT_CHECKPOINT_DIR / f"{name}.jsonl",
                public_key=checkpoints.key_files(data_dir / AUDIT_KEY_DIR, name)[1],
                signing_key=checkpoints.key_files(data_dir / AUDIT_KEY_DIR, name)[0],
            )
            for name in services
        ]
    finally:
        if started is not None and started.started:
            started.stop()


def verify(location: AuditLocation) -> Report:
    """Walk one service's chain and check it against its signed checkpoints."""
    public_key = location.public_key
    if public_key is not None and not public_key.exists():
        raise MeshError(
            f"the audit public key of {location.service} is missing: {public_key}",
            hint="restore it from your backup of the audit keys; without it, checkpoints "
            "cannot be checked (pass --no-checkpoints to verify the chain alone)",
        )
    try:
        return reader.verify_database(
            location.database_url, location.service, location.checkpoints, public_key
        )
    except checkpoints.CheckpointKeyError as exc:
        raise MeshError(str(exc)) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise MeshError(
            f"{location.service} has no audit log in its database",
            hint="`bankmesh up` migrates it on start",
        ) from exc
    except psycopg.OperationalError as exc:
        raise MeshError(
            f"cannot read the audit log of {location.service}: {str(exc).strip()}",
            hint="check that PostgreSQL runs (DATABASE_URL or the mesh's --data-dir)",
        ) from exc


def checkpoint_now(location: AuditLocation) -> dict[str, object] | None:
    """Sign the head of a service's chain now; None when the newest checkpoint has it."""
    if location.signing_key is None or location.checkpoints is None:
        raise MeshError("checkpoints need the data directory's audit keys")
    try:
        key = checkpoints.load_signing_key(location.signing_key)
    except checkpoints.CheckpointKeyError as exc:
        raise MeshError(str(exc), hint="`bankmesh up` creates the audit keys") from exc
    with psycopg.connect(to_libpq_url(location.database_url)) as conn:
        row = conn.execute(
            "SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    head = (int(row[0]), bytes(row[1]))
    if checkpoints.last_signed(location.checkpoints) == head:
        return None
    line = checkpoints.sign(key, location.service, *head)
    checkpoints.append(location.checkpoints, line)
    return line
