"""The verifier on chains built in memory: it names the first bad row and what happened to it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.audit import checkpoints
from services.common.audit.chain import (
    Anchor,
    ChainRow,
    Problem,
    Report,
    canonical,
    row_hash,
    verify,
)
from services.common.audit.schema import GENESIS_HASH

START = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def chain(length: int) -> list[ChainRow]:
    rows, previous = [], GENESIS_HASH
    for seq in range(1, length + 1):
        row = ChainRow(
            seq=seq,
            occurred_at=START + timedelta(seconds=seq),
            service="account",
            actor=f"user:{seq}",
            action="transfer.single_phase",
            subject=f"transfer-{seq}",
            outcome="success",
            source=f"request-{seq}",
            details_text=json.dumps({"amount": seq * 100}),
            prev_hash=previous,
            hash=b"",
        )
        row = dataclasses.replace(row, hash=row_hash(row))
        rows.append(row)
        previous = row.hash
    return rows


def lookup(rows: list[ChainRow]) -> Callable[[bytes], int | None]:
    return lambda digest: next((r.seq for r in rows if r.hash == digest), None)


def first_bad(report: Report) -> tuple[int, Problem]:
    assert report.first is not None, "the chain verified"
    return report.first.seq, report.first.problem


def test_the_canonical_text_is_length_prefixed_utf8_with_utc_microseconds() -> None:
    """Every field is `<bytes>:<value>,`; the time is UTC with six fraction digits."""
    row = dataclasses.replace(
        chain(1)[0],
        occurred_at=datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=UTC).astimezone(),
        actor="é",
    )
    text = canonical(row).decode()
    assert text.startswith("bankmesh.audit.v1,1:1,27:2026-01-02T04:04:05.000006Z,7:account,")
    assert ",2:é," in text  # two bytes in UTF-8, one character
    assert text.endswith(f"64:{GENESIS_HASH.hex()},")


def test_an_intact_chain_verifies() -> None:
    """Ten honest rows: no finding, head is the last row."""
    rows = chain(10)
    report = verify("account", rows)
    assert report.intact and report.rows == 10 and report.head_seq == 10


def test_an_altered_row_is_named() -> None:
    """Row 4's amount changed, its hash left alone: row 4, altered."""
    rows = chain(10)
    rows[3] = dataclasses.replace(rows[3], details_text='{"amount": 1}')
    report = verify("account", rows, seq_of_hash=lookup(rows))
    assert first_bad(report) == (4, Problem.ALTERED)


def test_a_deleted_row_is_named_by_its_missing_seq() -> None:
    """Row 5 deleted: row 5, deleted, whatever follows it."""
    rows = chain(10)
    del rows[4]
    report = verify("account", rows, seq_of_hash=lookup(rows))
    assert first_bad(report) == (5, Problem.DELETED)


def test_two_swapped_rows_are_named_as_reordered() -> None:
    """Rows 3 and 7 trade places (and seq numbers): row 3, reordered."""
    rows = chain(10)
    third, seventh = rows[2], rows[6]
    rows[2] = dataclasses.replace(seventh, seq=3)
    rows[6] = dataclasses.replace(third, seq=7)
    report = verify("account", rows, seq_of_hash=lookup(rows))
    assert first_bad(report) == (3, Problem.REORDERED)
    assert "written right after row 6" in report.findings[0].message


def test_a_row_altered_and_rehashed_is_named_through_the_next_row() -> None:
    """Row 6 changed and given a matching hash: row 7 no longer links, so row 6 is named."""
    rows = chain(10)
    forged = dataclasses.replace(rows[5], actor="user:mallory")
    rows[5] = dataclasses.replace(forged, hash=row_hash(forged))
    report = verify("account", rows, seq_of_hash=lookup(rows))
    assert first_bad(report) == (6, Problem.REWRITTEN)


def test_a_cut_tail_is_caught_by_a_checkpoint() -> None:
    """Rows 9 and 10 deleted after a checkpoint at 10: row 9, truncated."""
    rows = chain(10)
    anchor = Anchor(10, rows[9].hash, "2026-01-02T03:05:00Z")
    report = verify("account", rows[:8], [anchor])
    assert first_bad(report) == (9, Problem.TRUNCATED)


def test_a_chain_rewritten_from_the_start_is_caught_by_a_checkpoint() -> None:
    """Every row re-hashed after forging row 2: consistent, but not what was signed at 5."""
    honest = chain(8)
    forged = chain(8)
    forged[1] = dataclasses.replace(forged[1], actor="user:mallory")
    previous = forged[0].hash
    for i in range(1, 8):
        forged[i] = dataclasses.replace(forged[i], prev_hash=previous)
        forged[i] = dataclasses.replace(forged[i], hash=row_hash(forged[i]))
        previous = forged[i].hash
    anchors = [Anchor(1, honest[0].hash, "t1"), Anchor(5, honest[4].hash, "t5")]
    report = verify("account", forged, anchors)
    assert first_bad(report) == (2, Problem.MISMATCH)
    assert "rows 2..5" in report.findings[0].message


def test_signed_checkpoints_verify_and_an_edited_one_does_not(tmp_path: Path) -> None:
    """A checkpoint file as services write it; one line edited afterwards is a bad signature."""
    key = Ed25519PrivateKey.generate()
    file = tmp_path / "account.jsonl"
    checkpoints.append(file, checkpoints.sign(key, "account", 3, b"\x01" * 32))
    checkpoints.append(file, checkpoints.sign(key, "account", 5, b"\x02" * 32))
    anchors, bad = checkpoints.read_verified(file, key.public_key(), "account")
    assert [a.seq for a in anchors] == [3, 5] and not bad

    lines = file.read_text().splitlines()
    edited = json.loads(lines[1]) | {"seq": 4}
    file.write_text(lines[0] + "\n" + json.dumps(edited) + "\n")
    anchors, bad = checkpoints.read_verified(file, key.public_key(), "account")
    assert [a.seq for a in anchors] == [3]
    assert [(b.seq, b.problem) for b in bad] == [(4, Problem.SIGNATURE)]


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    """Whoever holds some other key cannot vouch for the chain."""
    file = tmp_path / "account.jsonl"
    checkpoints.append(
        file, checkpoints.sign(Ed25519PrivateKey.generate(), "account", 3, bytes(32))
    )
    anchors, bad = checkpoints.read_verified(
        file, Ed25519PrivateKey.generate().public_key(), "account"
    )
    assert not anchors and bad[0].problem is Problem.SIGNATURE


def test_the_signing_key_is_private_and_reused(tmp_path: Path) -> None:
    """Created 0600 once; the next start finds the same key; a key others can read is refused."""
    first = checkpoints.ensure_signing_key(tmp_path / "keys", "payment")
    assert first.stat().st_mode & 0o777 == 0o600
    assert checkpoints.ensure_signing_key(tmp_path / "keys", "payment") == first
    first.chmod(0o644)
    with pytest.raises(checkpoints.CheckpointKeyError, match="readable by others"):
        checkpoints.load_signing_key(first)
