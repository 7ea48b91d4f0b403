"""Reading a service's audit log for `bankmesh audit verify` and `bankmesh audit tail`.

Plain psycopg, synchronous, with a server-side cursor: verification streams
the chain in seq order, whatever its length, in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from mesh.runtime.postgres import to_libpq_url

from .chain import Anchor, ChainRow, Finding, Report, verify
from .checkpoints import load_public_key, read_verified

_COLUMNS = (
    "seq, occurred_at, service, actor, action, subject, outcome, source, details::text, "
    "prev_hash, hash"
)


def _row(values: tuple[Any, ...]) -> ChainRow:
    seq, at, service, actor, action, subject, outcome, source, details, prev, digest = values
    return ChainRow(
        seq,
        at,
        service,
        actor,
        action,
        subject,
        outcome,
        source,
        details,
        bytes(prev),
        bytes(digest),
    )


def _rows(conn: psycopg.Connection[Any]) -> Iterator[ChainRow]:
    with conn.cursor(name="audit_chain") as cursor:
        cursor.itersize = 2000
        cursor.execute(f"SELECT {_COLUMNS} FROM audit.events ORDER BY seq")  # noqa: S608 - constant
        for values in cursor:
            yield _row(values)


def verify_database(
    database_url: str,
    service: str,
    checkpoint_file: Path | None = None,
    public_key_file: Path | None = None,
) -> Report:
    """Verify one service's chain, against its signed checkpoints when given both files."""
    anchors: list[Anchor] = []
    bad: list[Finding] = []
    if checkpoint_file is not None and public_key_file is not None:
        anchors, bad = read_verified(checkpoint_file, load_public_key(public_key_file), service)
    with psycopg.connect(to_libpq_url(database_url)) as conn:
        conn.read_only = True
        # The walk needs a second connection for lookups while its cursor is open.
        with psycopg.connect(to_libpq_url(database_url)) as lookups:

            def seq_of_hash(digest: bytes) -> int | None:
                row = lookups.execute(
                    "SELECT seq FROM audit.events WHERE hash = %s ORDER BY seq LIMIT 1", (digest,)
                ).fetchone()
                return None if row is None else int(row[0])

            with conn.transaction():
                return verify(service, _rows(conn), anchors, bad, seq_of_hash)


@dataclass(frozen=True, slots=True)
class Recent:
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    subject: str
    outcome: str
    source: str
    details: str


def recent(database_url: str, limit: int = 20, action: str = "", subject: str = "") -> list[Recent]:
    """The newest events, newest first, optionally of one action (prefix) or subject."""
    where, params = [], []
    if action:
        where.append("action LIKE %s")
        params.append(action.replace("%", r"\%").replace("_", r"\_") + "%")
    if subject:
        where.append("subject = %s")
        params.append(subject)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    query = (
        "SELECT seq, occurred_at, actor, action, subject, outcome, source, details::text "  # noqa: S608 - clauses are constants
        f"FROM audit.events {clause} ORDER BY seq DESC LIMIT %s"
    )
    with psycopg.connect(to_libpq_url(database_url)) as conn:
        rows = conn.execute(query, (*params, limit)).fetchall()
    return [Recent(*row) for row in rows]
