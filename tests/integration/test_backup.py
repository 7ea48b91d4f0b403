"""A backup brings the books back exactly as they were at a chosen moment.

An embedded PostgreSQL in a temporary data directory runs as `bankmesh up`
runs it, archiving its WAL, and holds the ledger. After a base backup,
several clients move money while snapshots of every balance are taken at
quiet moments (writers held at a gate, so nothing commits between a
snapshot and the time noted with it). The cluster restored to one of those
moments must hold exactly that snapshot, and keep every ledger invariant.

Around it: restores refuse to write where something already is, the archive
never replaces a segment with a different one, pruning keeps what the newest
backups need, and a logical dump restores a database row for row.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from mesh.cli import app
from mesh.runtime.backup import (
    BackupSource,
    BaseBackup,
    list_base_backups,
    mesh_database,
    prune,
    restore_base_backup,
    restore_dump,
    take_base_backup,
    take_logical_backup,
)
from mesh.runtime.errors import MeshError
from mesh.runtime.postgres import (
    EmbeddedPostgres,
    archive_command,
    ensure_database,
    start_embedded_postgres,
    wal_archive_dir,
    with_database,
)
from services.account.adapters.migrations import upgrade
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.domain.model import Account, AccountType, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.database import create_engine
from tests.conftest import DatabaseFactory
from tests.support.clock import SteppingClock

pytestmark = pytest.mark.integration

WRITERS = 4
TRANSFERS_PER_WRITER = 120
STARTING_BALANCE = 10_000

Balances = dict[uuid.UUID, tuple[int, int, int, int]]


@dataclass(frozen=True)
class Snapshot:
    """Every account's counters, and a moment after them at which nothing had committed since."""

    taken_at: datetime
    balances: Balances
    transfers: int


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mesh")


@pytest.fixture(scope="module")
def embedded(mesh_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded_postgres(mesh_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ledger_url(embedded: EmbeddedPostgres) -> str:
    url = ensure_database(embedded.url, "bankmesh_account")
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def base_backup(mesh_dir: Path, embedded: EmbeddedPostgres, ledger_url: str) -> BaseBackup:
    with mesh_database(mesh_dir, None) as source:
        return take_base_backup(source, mesh_dir / "backups" / "base")


# --- helpers --------------------------------------------------------------------------


class Gate:
    """Writers pass one transfer at a time; closing it waits until none is in flight."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0

    @asynccontextmanager
    async def passage(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    @asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


async def snapshot(conn: psycopg.AsyncConnection[Any]) -> Snapshot:
    cur = await conn.execute(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger.accounts"
    )
    balances = {row[0]: (row[1], row[2], row[3], row[4]) for row in await cur.fetchall()}
    cur = await conn.execute("SELECT count(*), clock_timestamp() FROM ledger.transfers")
    row = await cur.fetchone()
    assert row is not None
    return Snapshot(taken_at=row[1], balances=balances, transfers=row[0])


async def write(ledger: Ledger, accounts: list[Account], gate: Gate, seed: int) -> None:
    """Payments, holds and their captures or releases, between random accounts of one currency."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traffic, not secrets
    holds: list[uuid.UUID] = []
    for _ in range(TRANSFERS_PER_WRITER):
        payer, payee = rng.sample(accounts, 2)
        roll = rng.random()
        if roll < 0.15 and holds:
            kind = rng.choice([TransferKind.POST_PENDING, TransferKind.VOID_PENDING])
            request = NewTransfer(uuid.uuid4(), kind, None, None, None, None, holds.pop())
        else:
            kind = TransferKind.PENDING if roll < 0.3 else TransferKind.SINGLE_PHASE
            amount = rng.randint(1, 1_500)
            request = NewTransfer(uuid.uuid4(), kind, payer.id, payee.id, amount, "EUR")
        async with gate.passage():
            (result,) = await ledger.create_transfers([request])
        if result.transfer is not None and result.transfer.kind is TransferKind.PENDING:
            holds.append(result.transfer.id)


async def record(conn: psycopg.AsyncConnection[Any], gate: Gate, into: list[Snapshot]) -> None:
    """A snapshot every few dozen milliseconds, each at a quiet moment of the load."""
    while True:
        await asyncio.sleep(0.05)
        async with gate.closed():
            into.append(await snapshot(conn))
            # Commits after the gate opens are later than the moment noted.
            await asyncio.sleep(0.01)


def archive_everything(server_url: str, timeout: float = 30.0) -> None:
    """Close the current WAL segment and wait until the archive holds it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            if archived is not None and archived[0] is not None and archived[0] >= row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"segment {row[0]} was not archived within {timeout}s")


def check_ledger_invariants(conn: psycopg.Connection[Any]) -> None:
    """The books balance, per currency, per account and per transfer (docs/architecture.md)."""
    unbalanced = conn.execute(
        "SELECT currency, sum(credits_posted - debits_posted), sum(credits_pending - debits_pending)"
        " FROM ledger.accounts GROUP BY currency"
        " HAVING sum(credits_posted - debits_posted) <> 0"
        " OR sum(credits_pending - debits_pending) <> 0"
    ).fetchall()
    assert unbalanced == [], "a currency whose credits and debits differ"
    off_chain = conn.execute(
        "SELECT a.id FROM ledger.accounts a"
        " LEFT JOIN LATERAL (SELECT e.debits_posted, e.credits_posted, e.debits_pending,"
        "   e.credits_pending FROM ledger.entries e WHERE e.account_id = a.id"
        "   ORDER BY e.created_at DESC, e.seq DESC LIMIT 1) head ON true"
        " LEFT JOIN LATERAL (SELECT"
        "   coalesce(sum(posted_delta) FILTER (WHERE direction = 'D'), 0) AS dp,"
        "   coalesce(sum(posted_delta) FILTER (WHERE direction = 'C'), 0) AS cp,"
        "   coalesce(sum(pending_delta) FILTER (WHERE direction = 'D'), 0) AS dpe,"
        "   coalesce(sum(pending_delta) FILTER (WHERE direction = 'C'), 0) AS cpe"
        "   FROM ledger.entries e WHERE e.account_id = a.id) total ON true"
        " WHERE (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)"
        "   IS DISTINCT FROM (coalesce(head.debits_posted, 0), coalesce(head.credits_posted, 0),"
        "   coalesce(head.debits_pending, 0), coalesce(head.credits_pending, 0))"
        " OR (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)"
        "   IS DISTINCT FROM (total.dp, total.cp, total.dpe, total.cpe)"
    ).fetchall()
    assert off_chain == [], "accounts whose counters are not the head and sum of their entries"
    overdrawn = conn.execute(
        "SELECT id FROM ledger.accounts WHERE debits_must_not_exceed_credits"
        " AND debits_posted + debits_pending > credits_posted + overdraft_limit"
    ).fetchall()
    assert overdrawn == [], "no-overdraft accounts below zero"
    lopsided = conn.execute(
        "SELECT t.id FROM ledger.transfers t LEFT JOIN ledger.entries e ON e.transfer_id = t.id"
        " GROUP BY t.id HAVING count(e.seq) <> 2"
        " OR count(*) FILTER (WHERE e.direction = 'D') <> 1"
        " OR sum(CASE WHEN e.direction = 'D' THEN e.posted_delta ELSE -e.posted_delta END) <> 0"
        " OR sum(CASE WHEN e.direction = 'D' THEN e.pending_delta ELSE -e.pending_delta END) <> 0"
    ).fetchall()
    assert lopsided == [], "transfers without one debit and one equal credit entry"


def balances_of(conn: psycopg.Connection[Any]) -> Balances:
    rows = conn.execute(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger.accounts"
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def table_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        counts: dict[str, int] = {}
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            row = conn.execute(query).fetchone()
            assert row is not None
            counts[f"{schema}.{table}"] = row[0]
    return counts


async def open_and_fund(ledger: Ledger, customers: int) -> list[Account]:
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    accounts = [
        (await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, f"c{i}")))[0]
        for i in range(customers)
    ]
    await ledger.create_transfers(
        [
            NewTransfer(
                uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, a.id, STARTING_BALANCE, "EUR"
            )
            for a in accounts
        ]
    )
    return [bank, *accounts]


# --- point-in-time restore -----------------------------------------------------------


async def test_a_restore_to_a_moment_of_the_load_holds_exactly_the_books_of_that_moment(
    mesh_dir: Path,
    embedded: EmbeddedPostgres,
    ledger_url: str,
    base_backup: BaseBackup,
    tmp_path: Path,
) -> None:
    """Transfers up to T are there, later ones are not, and every ledger invariant holds."""
    engine = create_engine(ledger_url, pool_size=WRITERS + 2)
    clock = SteppingClock()
    ledgers = [Ledger(lambda: SqlUnitOfWork(engine), clock) for _ in range(WRITERS + 1)]
    snapshots: list[Snapshot] = []
    try:
        # Everything from here on exists only in the WAL archive, not in the backup.
        accounts = await open_and_fund(ledgers[0], customers=5)
        gate = Gate()
        async with await psycopg.AsyncConnection.connect(ledger_url, autocommit=True) as conn:
            snapshots.append(await snapshot(conn))
            recorder = asyncio.create_task(record(conn, gate, snapshots))
            try:
                await asyncio.gather(
                    *(write(ledgers[i + 1], accounts, gate, seed=i) for i in range(WRITERS))
                )
            finally:
                recorder.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await recorder
            final = await snapshot(conn)
    finally:
        for ledger in ledgers:
            await ledger.shutdown()
        await engine.dispose()
    await asyncio.to_thread(archive_everything, embedded.url)

    # A moment in the middle: some transfers committed before it, others after.
    chosen = snapshots[len(snapshots) // 2]
    assert len(snapshots) >= 5
    assert snapshots[0].transfers < chosen.transfers < final.transfers
    assert chosen.taken_at > base_backup.finished_at

    into = tmp_path / "restored"
    restored = await asyncio.to_thread(
        restore_base_backup,
        mesh_dir / "backups" / "base",
        into,
        target_time=chosen.taken_at,
    )
    try:
        assert restored.backup.directory == base_backup.directory
        assert restored.stopped_at is not None and "before commit" in restored.stopped_at
        assert restored.last_transaction_at is not None
        assert restored.last_transaction_at <= chosen.taken_at
        assert restored.timeline == 2
        assert "bankmesh_account" in [name for name, _ in restored.databases]
        with psycopg.connect(with_database(restored.url, "bankmesh_account")) as conn:
            check_ledger_invariants(conn)
            assert balances_of(conn) == chosen.balances
            row = conn.execute("SELECT count(*) FROM ledger.transfers").fetchone()
            assert row is not None and row[0] == chosen.transfers
    finally:
        await asyncio.to_thread(restored.stop)

    # The new timeline went to the restored cluster's own archive, not the one it came from.
    assert (into / "backups" / "wal" / "00000002.history").exists()
    assert not (wal_archive_dir(mesh_dir) / "00000002.history").exists()
    # And `bankmesh up --data-dir <into>` can run it as its embedded PostgreSQL.
    again = await asyncio.to_thread(start_embedded_postgres, into)
    try:
        with psycopg.connect(with_database(again.url, "bankmesh_account")) as conn:
            assert balances_of(conn) == chosen.balances
            assert conn.execute("SHOW archive_mode").fetchone() == ("on",)
    finally:
        await asyncio.to_thread(again.stop)


def test_a_restore_refuses_a_directory_that_is_not_empty(
    mesh_dir: Path, base_backup: BaseBackup, tmp_path: Path
) -> None:
    """Nothing is copied over existing files, and what was there stays as it was."""
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(MeshError, match="already exists and is not empty"):
        restore_base_backup(base_backup.directory, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    assert (occupied / "notes.txt").read_text() == "mine"


def test_a_restore_never_writes_into_the_live_data_directory(
    mesh_dir: Path, base_backup: BaseBackup
) -> None:
    """The mesh's own data directory, or a new one inside its cluster, is refused untouched."""
    before = sorted(p.name for p in mesh_dir.iterdir())
    with pytest.raises(MeshError, match="not empty"):
        restore_base_backup(base_backup.directory, mesh_dir)
    inside = mesh_dir / "postgres" / "restored"
    with pytest.raises(MeshError, match="inside the PostgreSQL cluster"):
        restore_base_backup(base_backup.directory, inside)
    assert not inside.exists()
    assert sorted(p.name for p in mesh_dir.iterdir()) == before


def test_a_restore_to_before_the_backup_ended_is_refused(
    base_backup: BaseBackup, tmp_path: Path
) -> None:
    """A base backup can only be rolled forward: an earlier target names the backup's end."""
    early = base_backup.finished_at - timedelta(minutes=1)
    with pytest.raises(MeshError, match="after the target time"):
        restore_base_backup(base_backup.directory, tmp_path / "early", target_time=early)
    assert not (tmp_path / "early").exists()


def test_a_restore_past_the_end_of_the_archive_fails_and_leaves_only_its_log(
    base_backup: BaseBackup, tmp_path: Path
) -> None:
    """Recovery cannot prove nothing committed by then: refused, directory removed, log kept."""
    into = tmp_path / "future"
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(MeshError, match="the WAL archive ends before") as refused:
        restore_base_backup(base_backup.directory, into, target_time=later)
    assert refused.value.hint is not None and "pg_switch_wal" in refused.value.hint
    assert not into.exists()
    assert "recovery ended before" in (tmp_path / "future.restore-failed.log").read_text()


# --- taking backups ----------------------------------------------------------------------


def test_a_running_server_without_archiving_is_backed_up_only_after_a_restart(
    tmp_path: Path,
) -> None:
    """Refused with the fix named; with --restart it comes back archiving and the backup verifies."""
    data_dir = tmp_path / "old-mesh"
    running = start_embedded_postgres(data_dir, archive_wal=False)
    try:
        with (
            pytest.raises(MeshError, match="without WAL archiving") as refused,
            mesh_database(data_dir, None),
        ):
            pass
        assert refused.value.hint is not None and "--restart" in refused.value.hint
        assert running.is_running()

        code, output = _cli("backup", "--data-dir", str(data_dir), "--restart", "--format", "tar")
        assert code == 0, output
        (made,) = list_base_backups(data_dir / "backups" / "base")
        assert made.format == "tar" and made.wal_archive == wal_archive_dir(data_dir)
        assert (made.data / "base.tar.gz").exists() and (made.data / "backup_manifest").exists()
        assert "verified with pg_verifybackup" in output
        server = start_embedded_postgres(data_dir)
        assert not server.started, "the restarted server was left running, as it was found"
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SHOW archive_mode").fetchone() == ("on",)
    finally:
        start_embedded_postgres(data_dir, archive_wal=False).stop()


def test_the_archive_command_keeps_a_segment_and_never_replaces_it_with_another(
    tmp_path: Path,
) -> None:
    """A retry of the same segment succeeds; a different file of that name fails and changes nothing."""
    archive = tmp_path / "wal archive 100%"
    archive.mkdir()
    cluster = tmp_path / "cluster"
    (cluster / "pg_wal").mkdir(parents=True)
    segment = cluster / "pg_wal" / "000000010000000000000001"

    def archive_it() -> int:
        # What PostgreSQL does: substitute %p (relative to the cluster) and %f, run it in a shell.
        command = archive_command(archive).replace("%p", "pg_wal/" + segment.name)
        command = command.replace("%f", segment.name).replace("%%", "%")
        return subprocess.run(["/bin/sh", "-c", command], cwd=cluster, check=False).returncode

    segment.write_bytes(b"first" * 1000)
    assert archive_it() == 0
    assert (archive / segment.name).read_bytes() == b"first" * 1000
    assert archive_it() == 0, "archiving the same segment again is a retry, not an error"
    segment.write_bytes(b"other" * 1000)
    assert archive_it() != 0
    assert (archive / segment.name).read_bytes() == b"first" * 1000
    assert [p.name for p in archive.iterdir()] == [segment.name], "no temporary files left"


def test_pruning_keeps_the_newest_backups_and_the_wal_the_oldest_of_them_needs(
    tmp_path: Path,
) -> None:
    """Older backups, older segments and interrupted backups go; history files stay."""
    root, archive = tmp_path / "base", tmp_path / "wal"
    root.mkdir()
    archive.mkdir()
    start = datetime(2026, 11, 29, tzinfo=UTC)
    for n, first_segment in enumerate([2, 5, 7, 9]):
        directory = root / f"backup-{n}"
        (directory / "data").mkdir(parents=True)
        description = BaseBackup(
            directory=directory,
            format="plain",
            label=directory.name,
            server_version="16.2",
            major=16,
            system_identifier=None,
            timeline=1,
            start_lsn=f"0/{first_segment:X}000028",
            end_lsn=f"0/{first_segment:X}000100",
            start_wal=f"0000000100000000{first_segment:08X}",
            started_at=start + timedelta(hours=4 * n),
            finished_at=start + timedelta(hours=4 * n, minutes=1),
            wal_archive=archive,
            source="test",
            superuser="postgres",
            databases=(),
            size_bytes=0,
        ).describe()
        (directory / "backup.json").write_text(json.dumps(description))
    (root / "20261130T000000Z.partial").mkdir()
    for segment in range(1, 12):
        (archive / f"0000000100000000{segment:08X}").write_bytes(b"x" * 16)
    (archive / "000000010000000000000005.00000028.backup").write_text("label")
    (archive / "00000002.history").write_text("1\t0/9000000\tno recovery target specified")
    (archive / "000000020000000000000006").write_bytes(b"y")

    result = prune(root, 2, wal_archive=archive)

    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "backup-2",
        "backup-3",
    ]
    assert sorted(p.name for p in result.removed) == ["backup-0", "backup-1"]
    assert result.oldest_wal_kept == "000000010000000000000007"
    remaining = sorted(p.name for p in archive.iterdir())
    assert remaining == sorted(
        ["00000002.history", *(f"0000000100000000{segment:08X}" for segment in range(7, 12))]
    )
    assert result.wal_removed == 8  # six segments of timeline 1, one of timeline 2, one .backup


# --- logical backups ------------------------------------------------------------------


async def test_a_logical_backup_restores_into_a_new_database_with_the_same_rows(
    databases: DatabaseFactory, postgres_server_url: str, tmp_path: Path
) -> None:
    """pg_dump of a live ledger, pg_restore into a new database: every table counts the same."""
    url = databases.create(upgrade, "logical")
    engine = create_engine(url)
    ledger = Ledger(lambda: SqlUnitOfWork(engine), SteppingClock())
    try:
        accounts = await open_and_fund(ledger, customers=3)
        await ledger.create_transfers(
            [
                NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, a.id, b.id, 100, "EUR")
                for a, b in itertools.pairwise(accounts[1:])
            ]
        )
    finally:
        await ledger.shutdown()
        await engine.dispose()
    name = urlsplit(url).path.lstrip("/")

    taken = await asyncio.to_thread(
        take_logical_backup, BackupSource(url, None), tmp_path, databases=[name]
    )
    copy_name = f"{name}_copy"
    databases.created.append(copy_name)
    copy_url = await asyncio.to_thread(
        restore_dump, taken.dumps[name], postgres_server_url, copy_name
    )

    counts = table_counts(url)
    assert counts["ledger.transfers"] == 3 + 2 and counts["ledger.entries"] == 10
    assert table_counts(copy_url) == counts
    with psycopg.connect(copy_url) as conn:
        check_ledger_invariants(conn)
        triggers = Counter(
            row[0]
            for row in conn.execute(
                "SELECT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"
            )
        )
    assert triggers["ledger.entries"] >= 3, "the ledger's guards came back with the data"


def _cli(*args: str) -> tuple[int, str]:
    # Without DATABASE_URL, whatever the environment says: the embedded server is the subject.
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "DATABASE_URL": ""})
    return result.exit_code, result.output
