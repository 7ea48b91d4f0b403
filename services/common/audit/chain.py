"""The chain, recomputed outside the database, and what is wrong with it if anything.

`canonical(row)` rebuilds the exact text `audit.canonical()` hashed (see
schema.py): the same fields, UTC microsecond timestamps, jsonb's text form of
`details` (read as `details::text`, so both sides use PostgreSQL's one
rendering), lengths in UTF-8 bytes. Python does the SHA-256, so a replaced
trigger function cannot vouch for itself.

`verify` walks rows in seq order and names each break, first one first:

    deleted      a seq is missing (a row, or a run of rows, was deleted)
    reordered    a row links to a row other than the one before it
    altered      a row's stored hash is not the hash of its contents
    rewritten    a row links to nothing: the one before it was altered and
                 re-hashed (or this one forged)
    truncated    a signed checkpoint names a seq past the head
    mismatch     a signed checkpoint's hash differs from the row's: the chain
                 was rewritten consistently, somewhere up to that row
    signature    a checkpoint whose signature does not verify

After a break the walk continues from the row found, so independent damage
further on is reported too.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .schema import GENESIS_HASH

VERSION = "bankmesh.audit.v1,"
MAX_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class ChainRow:
    seq: int
    occurred_at: datetime
    service: str
    actor: str
    action: str
    subject: str
    outcome: str
    source: str
    details_text: str  # details::text, PostgreSQL's rendering of the jsonb
    prev_hash: bytes
    hash: bytes


def timestamp_text(moment: datetime) -> str:
    """`to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: ChainRow) -> bytes:
    fields = (
        str(row.seq),
        timestamp_text(row.occurred_at),
        row.service,
        row.actor,
        row.action,
        row.subject,
        row.outcome,
        row.source,
        row.details_text,
        row.prev_hash.hex(),
    )
    return (VERSION + "".join(f"{len(f.encode())}:{f}," for f in fields)).encode()


def row_hash(row: ChainRow) -> bytes:
    return hashlib.sha256(canonical(row)).digest()


class Problem(enum.StrEnum):
    DELETED = "deleted"
    REORDERED = "reordered"
    ALTERED = "altered"
    REWRITTEN = "rewritten"
    TRUNCATED = "truncated"
    MISMATCH = "mismatch"
    SIGNATURE = "signature"


@dataclass(frozen=True, slots=True)
class Finding:
    seq: int  # the first row concerned (for a bad signature: the checkpoint's seq)
    problem: Problem
    message: str


@dataclass(frozen=True, slots=True)
class Anchor:
    """A signed checkpoint whose signature verified: the chain had `hash` at `seq`."""

    seq: int
    hash: bytes
    signed_at: str


@dataclass
class Report:
    service: str
    rows: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS_HASH
    checkpoints: int = 0  # signed checkpoints that verified
    newest_checkpoint: Anchor | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None


def verify(
    service: str,
    rows: Iterable[ChainRow],
    anchors: Sequence[Anchor] = (),
    bad_checkpoints: Sequence[Finding] = (),
    seq_of_hash: Callable[[bytes], int | None] = lambda _: None,
) -> Report:
    """Walk `rows` (ascending seq) and compare with the signed `anchors`.

    `seq_of_hash` finds the row that carries a hash (used only at a break, to
    tell a reordering from a rewrite).
    """
    report = Report(service)
    findings: list[Finding] = list(bad_checkpoints)
    wanted = {a.seq for a in anchors}
    seen: dict[int, bytes] = {}
    previous_seq, previous_hash = 0, GENESIS_HASH
    for row in rows:
        report.rows += 1
        if len(findings) < MAX_PROBLEMS:
            finding = _check(row, previous_seq, previous_hash, seq_of_hash)
            if finding is not None:
                findings.append(finding)
        if row.seq in wanted:
            seen[row.seq] = row.hash
        previous_seq, previous_hash = row.seq, row.hash
    report.head_seq, report.head_hash = previous_seq, previous_hash
    verified_up_to = 0
    for anchor in sorted(anchors, key=lambda a: a.seq):
        report.checkpoints += 1
        report.newest_checkpoint = anchor
        if anchor.seq > report.head_seq:
            findings.append(
                Finding(
                    report.head_seq + 1,
                    Problem.TRUNCATED,
                    f"rows {report.head_seq + 1}..{anchor.seq} are gone: a checkpoint signed "
                    f"at {anchor.signed_at} saw the chain at seq {anchor.seq}, the head is "
                    f"{report.head_seq}",
                )
            )
            break
        stored = seen.get(anchor.seq)
        if stored is not None and stored != anchor.hash:
            findings.append(
                Finding(
                    verified_up_to + 1,
                    Problem.MISMATCH,
                    f"row {anchor.seq} is not the row signed at {anchor.signed_at}: the chain "
                    f"was rewritten (and re-hashed) somewhere in rows "
                    f"{verified_up_to + 1}..{anchor.seq}",
                )
            )
        verified_up_to = anchor.seq
    report.findings = sorted(findings, key=lambda f: f.seq)
    return report


def _check(
    row: ChainRow,
    previous_seq: int,
    previous_hash: bytes,
    seq_of_hash: Callable[[bytes], int | None],
) -> Finding | None:
    expected = previous_seq + 1
    if row.seq != expected:
        missing = (
            f"row {expected}" if row.seq == expected + 1 else f"rows {expected}..{row.seq - 1}"
        )
        after = (
            f"row {row.seq} follows row {previous_seq}"
            if previous_seq
            else (f"the chain starts at row {row.seq}")
        )
        return Finding(expected, Problem.DELETED, f"{missing} deleted: {after}")
    consistent = row_hash(row) == row.hash
    if row.prev_hash != previous_hash:
        linked_to = seq_of_hash(row.prev_hash)
        if linked_to is not None and linked_to != previous_seq:
            return Finding(
                row.seq,
                Problem.REORDERED,
                f"row {row.seq} is out of order: it was written right after row {linked_to}, "
                f"not after row {previous_seq}",
            )
        if consistent and previous_seq:
            return Finding(
                previous_seq,
                Problem.REWRITTEN,
                f"row {previous_seq} was altered and re-hashed: row {row.seq} no longer "
                f"links to it",
            )
    if not consistent:
        return Finding(
            row.seq,
            Problem.ALTERED,
            f"row {row.seq} ({row.action}, {row.subject or 'no subject'}) was altered: its "
            f"contents do not hash to its stored hash",
        )
    return None
