"""Backups of the mesh's PostgreSQL, and point-in-time restores from them.

Two kinds, for two purposes:

* Physical (``take_base_backup``): a base backup of the whole cluster with
  ``pg_basebackup`` (plain or tar format, the WAL it needs streamed in, a
  SHA-256 manifest), checked with ``pg_verifybackup``. Together with the WAL
  archive (every segment the server finished since, see
  ``mesh.runtime.postgres.archive_command``) it restores the cluster as it
  was at any moment after the backup (``restore_base_backup``).
* Logical (``take_logical_backup``): ``pg_dump`` of each service database in
  custom format. Portable across machines and major versions, restorable one
  database at a time (``restore_dump``), but only as of the moment it was
  taken: no point in time.

Binaries: a base backup must be taken and started with the server's own
major version, so tools are looked up by version (``find_pg_tools``): the
running embedded server's own directory first, then pgserver's, the usual
install locations and PATH. ``BANKMESH_PG_BIN_DIR`` names one explicitly.

Layout under a backup root (``<data_dir>/backups`` by default)::

    wal/                      the WAL archive (written by the server)
    base/<UTC time>/          one base backup: backup.json, data/ (what
                              pg_basebackup wrote, backup_manifest included)
    logical/<UTC time>/       one logical backup: backup.json, <db>.dump

A backup is written under ``<name>.partial`` and renamed when complete, and
``backup.json`` is its last file: a directory without it is not a backup.
Taking and pruning backups hold ``.lock`` in their root, so a scheduled
prune never deletes what a backup is still writing.

A restore never writes into an existing non-empty directory. It copies the
base backup into ``<into>/postgres``, which is where ``bankmesh up --data-dir
<into>`` looks for its embedded cluster, so the restored mesh can be run as
is; its own WAL goes to ``<into>/backups/wal``, never into the archive it was
restored from.

Progress is reported through a ``BackupReporter`` so this module knows
nothing of terminals; the CLI supplies one with rich progress bars.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import psycopg
from psycopg import sql

from mesh.runtime.errors import MeshError
from mesh.runtime.postgres import (
    EmbeddedPostgres,
    redact_url,
    server_label,
    start_embedded_postgres,
    to_libpq_url,
    wal_archive_dir,
    wal_archiving_settings,
    with_database,
)

BACKUP_FILE = "backup.json"
PARTIAL_SUFFIX = ".partial"
BIN_DIR_VARIABLE = "BANKMESH_PG_BIN_DIR"
# Databases of the mesh are named bankmesh_<service>; the test suites' are not ours.
_MESH_DATABASES = r"bankmesh\_%"
_TEST_DATABASES = r"bankmesh\_test\_%"
_WAL_NAME = re.compile(r"^[0-9A-F]{24}")
_PROGRESS = re.compile(r"(\d+)/(\d+) kB")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


# --- reporting -------------------------------------------------------------------


class Advance(Protocol):
    """Moves a progress bar: ``done`` of ``total`` (None while unknown)."""

    def __call__(self, done: float, total: float | None = None) -> None: ...


class BackupReporter(Protocol):
    """Where backups and restores tell a human what they are doing."""

    def step(self, description: str) -> AbstractContextManager[object]:
        """Wrap a step of unknown length (a spinner, say)."""
        ...

    def progress(self, description: str, unit: str) -> AbstractContextManager[Advance]:
        """Wrap a long step that can say how far it is; ``unit`` is "bytes" or "seconds"."""
        ...

    def warn(self, message: str) -> None: ...


def _ignore_advance(done: float, total: float | None = None) -> None:
    pass


class QuietBackupReporter:
    """Reports nothing; for scripts and tests."""

    def step(self, description: str) -> AbstractContextManager[object]:
        return nullcontext()

    def progress(self, description: str, unit: str) -> AbstractContextManager[Advance]:
        return nullcontext(_ignore_advance)

    def warn(self, message: str) -> None:
        pass


# --- PostgreSQL binaries ---------------------------------------------------------


@dataclass(frozen=True)
class PgTools:
    """A directory of PostgreSQL programs of one major version."""

    bin_dir: Path
    major: int

    def __call__(self, program: str) -> str:
        return str(self.bin_dir / program)


def find_pg_tools(major: int, programs: Sequence[str], *, server_pid: int | None = None) -> PgTools:
    """A bin directory holding ``programs`` of PostgreSQL ``major``.

    Looks in BANKMESH_PG_BIN_DIR, the directory of the running server
    ``server_pid`` (when it is local), pgserver's, the usual install
    locations, then PATH. Raises MeshError naming what to install otherwise.
    """
    for directory in _candidate_bin_dirs(major, server_pid):
        present = all(os.access(directory / program, os.X_OK) for program in programs)
        if present and _program_major(directory / programs[0]) == major:
            return PgTools(directory, major)
    explicit = os.environ.get(BIN_DIR_VARIABLE)
    looked = f" (also looked in {BIN_DIR_VARIABLE}={explicit})" if explicit else ""
    raise MeshError(
        f"no PostgreSQL {major} {', '.join(programs)} found on this machine{looked}",
        hint=(
            f"the tools must be of the server's major version, {major}: install them "
            f"(Debian/Ubuntu: postgresql-{major}; RHEL: postgresql{major}-server; "
            f"Homebrew: postgresql@{major}), or set {BIN_DIR_VARIABLE} to their bin directory"
        ),
    )


def server_major(server_url: str) -> int:
    """The major version of the server at ``server_url`` (16 for 16.2)."""
    with _connect(server_url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def _candidate_bin_dirs(major: int, server_pid: int | None) -> Iterator[Path]:
    seen: set[Path] = set()
    candidates: list[Path] = []
    explicit = os.environ.get(BIN_DIR_VARIABLE)
    if explicit:
        candidates.append(Path(explicit).expanduser())
    if server_pid is not None:
        with contextlib.suppress(OSError):
            candidates.append(Path(os.readlink(f"/proc/{server_pid}/exe")).parent)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    candidates += [
        Path(f"/usr/lib/postgresql/{major}/bin"),
        Path(f"/usr/pgsql-{major}/bin"),
        Path(f"/opt/homebrew/opt/postgresql@{major}/bin"),
        Path(f"/usr/local/opt/postgresql@{major}/bin"),
        Path(f"/Applications/Postgres.app/Contents/Versions/{major}/bin"),
    ]
    candidates += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for candidate in candidates:
        if candidate not in seen and candidate.is_dir():
            seen.add(candidate)
            yield candidate


@cache
def _program_major(program: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


# --- what a backup is --------------------------------------------------------------


@dataclass(frozen=True)
class BaseBackup:
    """A complete base backup, as described by its ``backup.json``."""

    directory: Path
    format: str  # "plain" or "tar"
    label: str
    server_version: str
    major: int
    system_identifier: str | None
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal: str  # the first WAL segment a restore from it reads
    started_at: datetime
    finished_at: datetime  # the earliest moment it can be restored to
    wal_archive: Path | None
    source: str  # the server it was taken from, without secrets
    superuser: str
    databases: tuple[str, ...]
    size_bytes: int

    @property
    def data(self) -> Path:
        """What pg_basebackup wrote: the cluster (plain) or its tar files."""
        return self.directory / "data"

    @classmethod
    def load(cls, directory: Path) -> BaseBackup:
        raw = _read_description(directory, "base")
        try:
            archive = raw["wal_archive"]
            return cls(
                directory=directory,
                format=str(raw["format"]),
                label=str(raw["label"]),
                server_version=str(raw["server_version"]),
                major=int(raw["major"]),
                system_identifier=raw.get("system_identifier"),
                timeline=int(raw["timeline"]),
                start_lsn=str(raw["start_lsn"]),
                end_lsn=str(raw["end_lsn"]),
                start_wal=str(raw["start_wal"]),
                started_at=datetime.fromisoformat(raw["started_at"]),
                finished_at=datetime.fromisoformat(raw["finished_at"]),
                wal_archive=Path(archive) if archive else None,
                source=str(raw["source"]),
                superuser=str(raw.get("superuser") or "postgres"),
                databases=tuple(raw.get("databases", ())),
                size_bytes=int(raw.get("size_bytes", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MeshError(
                f"{directory / BACKUP_FILE} is not a bankmesh base backup description: {exc}",
                hint="pass the directory of a backup made by `bankmesh backup`",
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "base",
            "format": self.format,
            "label": self.label,
            "server_version": self.server_version,
            "major": self.major,
            "system_identifier": self.system_identifier,
            "timeline": self.timeline,
            "start_lsn": self.start_lsn,
            "end_lsn": self.end_lsn,
            "start_wal": self.start_wal,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "wal_archive": str(self.wal_archive) if self.wal_archive else None,
            "source": self.source,
            "superuser": self.superuser,
            "databases": list(self.databases),
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class LogicalBackup:
    """A complete logical backup: one custom-format dump per database."""

    directory: Path
    server_version: str
    taken_at: datetime
    source: str
    dumps: dict[str, Path]  # database -> its .dump file
    size_bytes: int

    @classmethod
    def load(cls, directory: Path) -> LogicalBackup:
        raw = _read_description(directory, "logical")
        try:
            return cls(
                directory=directory,
                server_version=str(raw["server_version"]),
                taken_at=datetime.fromisoformat(raw["taken_at"]),
                source=str(raw["source"]),
                dumps={str(db): directory / str(f) for db, f in raw["dumps"].items()},
                size_bytes=int(raw.get("size_bytes", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MeshError(
                f"{directory / BACKUP_FILE} is not a bankmesh logical backup description: {exc}",
                hint="pass the directory of a backup made by `bankmesh backup --logical`",
            ) from exc


def _read_description(directory: Path, kind: str) -> dict[str, Any]:
    path = directory / BACKUP_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise MeshError(
            f"{directory} holds no complete backup (no {BACKUP_FILE})",
            hint="a backup that was interrupted has no description; use another one",
        ) from None
    except (OSError, ValueError) as exc:
        raise MeshError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise MeshError(
            f"{directory} is not a {kind} backup",
            hint="`bankmesh restore` takes a base backup; logical dumps go through pg_restore",
        )
    return raw


def list_base_backups(root: Path) -> list[BaseBackup]:
    """The complete base backups directly under ``root``, oldest first."""
    return sorted(
        (BaseBackup.load(d) for d in _complete_backup_dirs(root, "base")),
        key=lambda b: b.finished_at,
    )


def list_logical_backups(root: Path) -> list[LogicalBackup]:
    """The complete logical backups directly under ``root``, oldest first."""
    return sorted(
        (LogicalBackup.load(d) for d in _complete_backup_dirs(root, "logical")),
        key=lambda b: b.taken_at,
    )


def _complete_backup_dirs(root: Path, kind: str) -> Iterator[Path]:
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.endswith(PARTIAL_SUFFIX):
            try:
                raw = json.loads((child / BACKUP_FILE).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(raw, dict) and raw.get("kind") == kind:
                yield child


# --- taking backups -----------------------------------------------------------------


@dataclass(frozen=True)
class BackupSource:
    """The server to back up: its URL, and the archive its WAL goes to, if known."""

    url: str
    wal_archive: Path | None
    embedded: EmbeddedPostgres | None = None

    @property
    def label(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL in {self.embedded.pgdata}"
        return redact_url(self.url)


@contextlib.contextmanager
def mesh_database(
    data_dir: Path,
    database_url: str | None,
    *,
    wal_archive: Path | None = None,
    restart: bool = False,
    reporter: BackupReporter | None = None,
) -> Iterator[BackupSource]:
    """The mesh's PostgreSQL, ready to be backed up, for the length of the block.

    With ``database_url`` (DATABASE_URL) that server, whose WAL archive, if
    any, is the operator's (``wal_archive``). Without, the embedded server of
    ``data_dir``: started if it is not running (and stopped again after),
    with WAL archiving on. An embedded server that is already running without
    archiving is restarted only with ``restart``; otherwise MeshError.
    """
    reporter = reporter or QuietBackupReporter()
    if database_url:
        try:
            url = to_libpq_url(database_url)
        except ValueError as exc:
            raise MeshError(
                f"DATABASE_URL is not a PostgreSQL URL: {exc}",
                hint="use the form postgresql://user:password@host:5432/postgres",
            ) from exc
        yield BackupSource(url, wal_archive.resolve() if wal_archive else None)
        return
    data_dir = Path(data_dir).expanduser().resolve()
    pgdata = data_dir / "postgres"
    if not (pgdata / "PG_VERSION").exists():
        raise MeshError(
            f"there is no embedded PostgreSQL in {pgdata} to back up",
            hint="pass the --data-dir the mesh runs from, or set DATABASE_URL for your own server",
        )
    with reporter.step(f"Starting the embedded PostgreSQL in {pgdata}"):
        server = start_embedded_postgres(data_dir)
    # Stopped after only when this call started it: one already running
    # serves a mesh, and still does after a restart here.
    ours = server.started
    try:
        if not _archiving(server.url):
            if not restart:
                raise MeshError(
                    f"the embedded PostgreSQL in {pgdata} (pid {server.pid}) is running "
                    "without WAL archiving, which starts only when PostgreSQL restarts",
                    hint=(
                        "restart the mesh (Ctrl-C, then `bankmesh up`), or run `bankmesh "
                        "backup --restart` to restart PostgreSQL under it (its open "
                        "transactions are rolled back; services reconnect)"
                    ),
                )
            with reporter.step("Restarting the embedded PostgreSQL to turn on WAL archiving"):
                server.stop()
                server = start_embedded_postgres(data_dir)
        yield BackupSource(server.url, wal_archive_dir(data_dir), embedded=server)
    finally:
        if ours:
            server.stop()


def take_base_backup(
    source: BackupSource,
    root: Path,
    *,
    format: str = "plain",
    reporter: BackupReporter | None = None,
) -> BaseBackup:
    """A verified base backup of ``source`` in a new directory under ``root``.

    ``format`` is "plain" (a copy of the cluster's files) or "tar" (gzipped
    tar files, smaller to ship). Raises MeshError, with the fix when there is
    one, when the server does not allow it.
    """
    if format not in ("plain", "tar"):
        raise ValueError(f"format must be plain or tar, not {format!r}")
    reporter = reporter or QuietBackupReporter()
    facts = _check_replication(source)
    if not facts.archiving:
        reporter.warn(
            f"{source.label} does not archive its WAL (archive_mode is off): this backup "
            "restores only to the moment it ends; docs/operations.md lists the settings to change"
        )
    elif source.wal_archive is None:
        reporter.warn(
            f"{source.label} archives its WAL, but not where this command was told (--wal-archive):"
            " restoring past the end of this backup will need --wal-archive"
        )
    embedded_pid = source.embedded.pid if source.embedded else None
    tools = find_pg_tools(
        facts.major, ("pg_basebackup", "pg_verifybackup"), server_pid=embedded_pid
    )
    root = root.expanduser().resolve()
    with _backup_lock(root):
        name = _new_name(root, datetime.now(UTC))
        partial = root / f"{name}{PARTIAL_SUFFIX}"
        partial.mkdir(parents=True)
        target = partial / "data"
        argv = [
            tools("pg_basebackup"),
            "--dbname",
            source.url,
            "--pgdata",
            str(target),
            "--format",
            "tar" if format == "tar" else "plain",
            *(["--gzip"] if format == "tar" else []),
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--label",
            f"bankmesh {name}",
            "--manifest-checksums",
            "SHA256",
            "--progress",
            "--no-password",
        ]
        with _removed_on_failure(partial):
            with reporter.progress(f"Copying {source.label} (pg_basebackup)", "bytes") as advance:
                _run_pg_basebackup(argv, advance, source)
            finished_at = _server_now(source.url)
            with reporter.step("Verifying the backup against its manifest (pg_verifybackup)"):
                _verify(tools, target, format)
        manifest = json.loads((target / "backup_manifest").read_text())
        wal_range = manifest["WAL-Ranges"][0]
        backup = BaseBackup(
            directory=root / name,
            format=format,
            label=f"bankmesh {name}",
            server_version=facts.version,
            major=facts.major,
            system_identifier=facts.system_identifier,
            timeline=int(wal_range["Timeline"]),
            start_lsn=str(wal_range["Start-LSN"]),
            end_lsn=str(wal_range["End-LSN"]),
            start_wal=_wal_file_name(
                int(wal_range["Timeline"]), str(wal_range["Start-LSN"]), facts.segment_size
            ),
            started_at=facts.now,
            finished_at=finished_at,
            wal_archive=source.wal_archive if facts.archiving else None,
            source=source.label,
            superuser=facts.user,
            databases=facts.databases,
            size_bytes=_tree_size(target),
        )
        _write_description(partial, backup.describe())
        partial.rename(backup.directory)
    return backup


def take_logical_backup(
    source: BackupSource,
    root: Path,
    *,
    databases: Sequence[str] = (),
    reporter: BackupReporter | None = None,
) -> LogicalBackup:
    """``pg_dump`` (custom format) of each of ``databases`` into a new directory under ``root``.

    Without ``databases``, every mesh database on the server (``bankmesh_*``).
    Each dump is consistent on its own, not with the others, and none is a
    point in time you can choose: use base backups and the WAL archive for that.
    """
    reporter = reporter or QuietBackupReporter()
    with _connect(source.url) as conn:
        version = str(_one(conn, "SHOW server_version"))
        major = int(_one(conn, "SHOW server_version_num")) // 10000
        present = [
            str(row[0])
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
                " ORDER BY datname"
            )
        ]
        if not databases:
            databases = [
                str(row[0])
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s"
                    " AND datname NOT LIKE %s AND NOT datistemplate ORDER BY datname",
                    (_MESH_DATABASES, _TEST_DATABASES),
                )
            ]
    missing = [db for db in databases if db not in present]
    if missing:
        raise MeshError(
            f"no database {', '.join(missing)} on {source.label}",
            hint=f"it has {', '.join(present)}",
        )
    if not databases:
        raise MeshError(
            f"{source.label} has no mesh databases (bankmesh_*) to dump",
            hint="start the mesh once (`bankmesh up`), or name databases with --database",
        )
    embedded_pid = source.embedded.pid if source.embedded else None
    tools = _dump_tools(major, embedded_pid)
    root = root.expanduser().resolve()
    taken_at = _server_now(source.url)
    with _backup_lock(root):
        name = _new_name(root, taken_at)
        partial = root / f"{name}{PARTIAL_SUFFIX}"
        partial.mkdir(parents=True)
        dumps: dict[str, str] = {}
        for database in databases:
            file_name = f"{database}.dump"
            with (
                _removed_on_failure(partial),
                reporter.step(f"Dumping {database} (pg_dump, custom format)"),
            ):
                _run(
                    [
                        tools("pg_dump"),
                        "--format",
                        "custom",
                        "--no-password",
                        "--file",
                        str(partial / file_name),
                        "--dbname",
                        with_database(source.url, database),
                    ],
                    what=f"pg_dump of {database}",
                )
            dumps[database] = file_name
        size = _tree_size(partial)
        _write_description(
            partial,
            {
                "kind": "logical",
                "server_version": version,
                "taken_at": taken_at.isoformat(),
                "source": source.label,
                "dumps": dumps,
                "size_bytes": size,
                "point_in_time": False,
            },
        )
        partial.rename(root / name)
    return LogicalBackup.load(root / name)


def restore_dump(dump: Path, server_url: str, database: str) -> str:
    """Create ``database`` on ``server_url`` and ``pg_restore`` a custom-format dump into it.

    Refuses a database that exists. Returns the new database's URL.
    """
    with _connect(server_url) as conn:
        major = int(_one(conn, "SHOW server_version_num")) // 10000
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            raise MeshError(
                f"database {database!r} already exists on {server_label(server_url)}",
                hint="restore into a new database name; nothing was changed",
            )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = with_database(server_url, database)
    try:
        _run(
            [
                _dump_tools(major, None)("pg_restore"),
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-password",
                "--dbname",
                url,
                str(dump),
            ],
            what=f"pg_restore of {dump.name}",
        )
    except BaseException:
        # One transaction, so nothing was restored: drop the empty database too.
        with _connect(server_url) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(database)))
        raise
    return url


def _dump_tools(major: int, server_pid: int | None) -> PgTools:
    # pg_dump reads any older server, and pg_restore any older dump, so a
    # newer version does when the server's own is not installed.
    try:
        return find_pg_tools(major, ("pg_dump", "pg_restore"), server_pid=server_pid)
    except MeshError as first:
        for newer in range(major + 1, major + 6):
            with contextlib.suppress(MeshError):
                return find_pg_tools(newer, ("pg_dump", "pg_restore"))
        raise first from None


@dataclass(frozen=True)
class _ServerFacts:
    version: str
    major: int
    system_identifier: str | None
    archiving: bool
    segment_size: int
    user: str
    databases: tuple[str, ...]
    now: datetime


def _check_replication(source: BackupSource) -> _ServerFacts:
    where = source.label
    with _connect(source.url) as conn:
        user = str(_one(conn, "SELECT current_user"))
        allowed = _one(
            conn, "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user"
        )
        if not allowed:
            raise MeshError(
                f"PostgreSQL user {user!r} at {where} may not take base backups "
                "(it needs the REPLICATION attribute)",
                hint=(
                    f"as a superuser: ALTER ROLE {user} REPLICATION; and allow it in "
                    f"pg_hba.conf: host replication {user} <this host>/32 scram-sha-256"
                ),
            )
        wal_level = str(_one(conn, "SHOW wal_level"))
        senders = int(_one(conn, "SHOW max_wal_senders"))
        if wal_level == "minimal" or senders < 2:
            raise MeshError(
                f"{where} cannot stream a base backup (wal_level={wal_level}, "
                f"max_wal_senders={senders})",
                hint="set wal_level = replica and max_wal_senders = 10 (the defaults), then restart it",
            )
        system_identifier: str | None
        try:
            system_identifier = str(_one(conn, "SELECT system_identifier FROM pg_control_system()"))
        except psycopg.Error:
            system_identifier = None
        return _ServerFacts(
            version=str(_one(conn, "SHOW server_version")),
            major=int(_one(conn, "SHOW server_version_num")) // 10000,
            system_identifier=system_identifier,
            archiving=str(_one(conn, "SHOW archive_mode")) in ("on", "always"),
            segment_size=int(
                _one(
                    conn, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"
                )
            ),
            user=user,
            databases=tuple(
                str(row[0])
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname"
                )
            ),
            now=_one(conn, "SELECT now()"),
        )


def _archiving(server_url: str) -> bool:
    with _connect(server_url) as conn:
        return str(_one(conn, "SHOW archive_mode")) in ("on", "always")


def _run_pg_basebackup(argv: list[str], advance: Advance, source: BackupSource) -> None:
    messages: list[str] = []
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    # Text mode reads "\r" as a line end: each progress report is a line.
    for line in process.stderr:
        match = _PROGRESS.search(line)
        if match:
            advance(int(match.group(1)) * 1024, int(match.group(2)) * 1024)
        elif line.strip() and "skipping special file" not in line:
            messages.append(line.strip())
    if process.wait() != 0:
        text = "\n".join(m for m in messages if m != "waiting for checkpoint")
        raise MeshError(
            f"pg_basebackup of {source.label} failed: {text or 'no message'}",
            hint=_basebackup_hint(text),
        )


def _basebackup_hint(text: str) -> str | None:
    if "pg_hba.conf" in text:
        return (
            "allow replication connections from this host in the server's pg_hba.conf "
            "(host replication <user> <this host>/32 scram-sha-256), then reload it"
        )
    if "password" in text:
        return "give the password in DATABASE_URL, PGPASSWORD or ~/.pgpass"
    if "number of requested standby connections" in text or "max_wal_senders" in text:
        return "raise max_wal_senders on the server (2 per concurrent backup), then restart it"
    if "tablespace" in text:
        return "the server has tablespaces: take the backup with --format tar"
    return None


def _verify(tools: PgTools, target: Path, format: str) -> None:
    if format == "plain":
        _run([tools("pg_verifybackup"), str(target)], what="pg_verifybackup")
        return
    # pg_verifybackup reads plain backups only (before PostgreSQL 18): check
    # an unpacked copy, then throw it away.
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=target.parent))
    try:
        _unpack_tar_backup(target, scratch, _ignore_advance)
        _run(
            [
                tools("pg_verifybackup"),
                "--manifest-path",
                str(target / "backup_manifest"),
                str(scratch),
            ],
            what="pg_verifybackup",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- retention --------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` removed and kept."""

    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    wal_removed: int = 0
    bytes_freed: int = 0
    oldest_wal_kept: str | None = None


def prune(
    base_root: Path,
    keep: int,
    *,
    wal_archive: Path | None,
    logical_root: Path | None = None,
) -> PruneResult:
    """Keep the newest ``keep`` base (and logical) backups; delete older ones and unneeded WAL.

    WAL segments are removed only when older than the first segment of the
    oldest base backup kept (timeline history files always stay), so every
    backup kept can still be rolled forward to any later time. Leftovers of
    interrupted backups go too. With no base backup at all the archive is not
    touched: nothing says which of it is still needed.
    """
    if keep < 1:
        raise ValueError("keep at least one backup")
    removed: list[Path] = []
    kept: list[Path] = []
    freed = 0
    base_root = base_root.expanduser().resolve()
    with _backup_lock(base_root):
        backups = list_base_backups(base_root)
        for backup in backups[:-keep]:
            freed += _remove_tree(backup.directory)
            removed.append(backup.directory)
        survivors = backups[-keep:]
        kept += [b.directory for b in survivors]
        freed += _remove_partials(base_root)
        wal_removed, oldest = 0, None
        if wal_archive is not None and survivors and wal_archive.is_dir():
            oldest = min((b.start_wal for b in survivors), key=lambda name: name[8:])
            wal_removed, wal_bytes = _prune_wal(wal_archive, oldest)
            freed += wal_bytes
    if logical_root is not None and logical_root.is_dir():
        logical_root = logical_root.expanduser().resolve()
        with _backup_lock(logical_root):
            dumps = list_logical_backups(logical_root)
            for dump in dumps[:-keep]:
                freed += _remove_tree(dump.directory)
                removed.append(dump.directory)
            kept += [d.directory for d in dumps[-keep:]]
            freed += _remove_partials(logical_root)
    return PruneResult(removed, kept, wal_removed, freed, oldest)


def _prune_wal(archive: Path, oldest_needed: str) -> tuple[int, int]:
    # As pg_archivecleanup: compare the log and segment numbers (characters
    # 9-24), whatever the timeline; .partial and .backup files go with their
    # segment. Hidden files are copies the archiver is (or was) writing.
    count = size = 0
    stale = time.time() - 3600
    for path in archive.iterdir():
        name = path.name
        if name.startswith("."):
            if name.endswith(".tmp") and path.stat().st_mtime < stale:
                size += _unlink(path)
            continue
        if _WAL_NAME.match(name) and name[8:24] < oldest_needed[8:24]:
            size += _unlink(path)
            count += 1
    return count, size


def archive_summary(archive: Path) -> tuple[int, int, str | None, str | None]:
    """(segments, bytes, first, last) of a WAL archive; history and backup files not counted."""
    names = (
        sorted(
            p.name for p in archive.iterdir() if re.fullmatch(r"[0-9A-F]{24}(\.partial)?", p.name)
        )
        if archive.is_dir()
        else []
    )
    size = sum((archive / n).stat().st_size for n in names)
    return len(names), size, (names[0] if names else None), (names[-1] if names else None)


# --- restoring --------------------------------------------------------------------


@dataclass
class RestoredServer:
    """A PostgreSQL running on a restored cluster, and what the restore found.

    ``stopped_at`` is PostgreSQL's own account of where recovery stopped (the
    first transaction it left out, and that transaction's commit time);
    ``last_transaction_at`` is the commit time of the last one it replayed.
    """

    backup: BaseBackup
    data_dir: Path
    pgdata: Path
    socket_dir: Path
    url: str
    log_file: Path
    target_time: datetime | None
    timeline: int | None
    stopped_at: str | None
    last_transaction_at: datetime | None
    databases: list[tuple[str, int]]
    process: subprocess.Popen[bytes] | None = None
    # Where the server log is kept when the restore fails and ``data_dir`` is removed.
    failure_log: Path | None = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (a checkpoint, so the next start needs no recovery); waits for it."""
        if self.process is None:
            return
        _stop_postmaster(self.process, timeout)
        if self.socket_dir != self.pgdata:
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()  # the private one made for this server


def choose_backup(path: Path, target_time: datetime | None) -> BaseBackup:
    """The base backup at ``path``; or, for a directory of them, the newest that ends by ``target_time``."""
    path = path.expanduser().resolve()
    if (path / BACKUP_FILE).exists():
        return BaseBackup.load(path)
    backups = list_base_backups(path)
    if not backups:
        raise MeshError(
            f"no base backup in {path}",
            hint="pass a backup directory made by `bankmesh backup` (see `bankmesh backup --list`)",
        )
    usable = [b for b in backups if target_time is None or b.finished_at <= target_time]
    if not usable:
        raise MeshError(
            f"every base backup in {path} ends after {_when(target_time)}; the oldest ends "
            f"at {_when(backups[0].finished_at)}",
            hint="a backup restores only to moments after it ended: choose a later time",
        )
    return usable[-1]


def restore_base_backup(
    backup_path: Path,
    into: Path,
    *,
    target_time: datetime | None = None,
    wal_archive: Path | None = None,
    reporter: BackupReporter | None = None,
    timeout: float = 3600.0,
) -> RestoredServer:
    """Restore a base backup into the new directory ``into`` and recover it to ``target_time``.

    The cluster goes to ``into/postgres``. Recovery reads WAL from the
    backup's archive (or ``wal_archive``) up to the last transaction that
    committed at or before ``target_time`` (without a time: all of the
    archive), then promotes, starting a new timeline. The server is left
    running on a private Unix socket; the caller stops it (``stop``).

    Refuses an ``into`` that exists and is not empty, or lies inside a cluster.
    """
    reporter = reporter or QuietBackupReporter()
    if target_time is not None and target_time.tzinfo is None:
        raise ValueError("target_time needs a timezone")
    into = into.expanduser().resolve()
    _check_fresh(into)
    backup = choose_backup(backup_path, target_time)
    if target_time is not None and target_time < backup.finished_at:
        raise MeshError(
            f"the base backup {backup.directory} ends at {_when(backup.finished_at)}, after "
            f"the target time {_when(target_time)}",
            hint="restore from an older backup (pass the directory that holds them all)",
        )
    archive = wal_archive.expanduser().resolve() if wal_archive else backup.wal_archive
    if archive is not None and not archive.is_dir():
        raise MeshError(
            f"the WAL archive {archive} is not there",
            hint="pass --wal-archive with where the server's archive_command copies WAL",
        )
    if target_time is not None and archive is None:
        raise MeshError(
            f"{backup.directory} has no WAL archive to recover to {_when(target_time)} with",
            hint="pass --wal-archive, or restore without --target-time (to the end of the backup)",
        )
    tools = find_pg_tools(backup.major, ("postgres", "pg_verifybackup"))
    account = _server_account(archive)
    pgdata = into / "postgres"
    created_into = not into.exists()
    into.mkdir(parents=True, exist_ok=True)
    try:
        pgdata.mkdir(mode=0o700)
        with reporter.progress(f"Copying the base backup into {pgdata}", "bytes") as advance:
            if backup.format == "tar":
                _unpack_tar_backup(backup.data, pgdata, advance)
            else:
                _copy_tree(backup.data, pgdata, advance)
        with reporter.step("Verifying the copy against the backup manifest (pg_verifybackup)"):
            _run(
                [
                    tools("pg_verifybackup"),
                    "--manifest-path",
                    str(backup.data / "backup_manifest"),
                    str(pgdata),
                ],
                what="pg_verifybackup",
            )
        own_archive = into / "backups" / "wal"
        _prepare_cluster(pgdata, own_archive, archive, target_time)
        socket_dir = _socket_dir(pgdata)
        hba = into / "restore-hba.conf"
        hba.write_text(
            "# Only local connections, only while the restore runs.\nlocal all all trust\n"
        )
        log_file = into / "restore.log"
        if account is not None:
            _hand_over(into, account)
        process = _start_postmaster(tools, pgdata, socket_dir, hba, log_file, account)
        url = (
            f"postgresql://{quote(backup.superuser, safe='')}@/postgres?"
            f"host={quote(str(socket_dir), safe='/')}"
        )
        restored = RestoredServer(
            backup=backup,
            data_dir=into,
            pgdata=pgdata,
            socket_dir=socket_dir,
            url=url,
            log_file=log_file,
            target_time=target_time,
            timeline=None,
            stopped_at=None,
            last_transaction_at=None,
            databases=[],
            process=process,
            failure_log=into.parent / f"{into.name}.restore-failed.log",
        )
        try:
            _wait_for_recovery(restored, reporter, timeout)
            _finish_recovery(restored)
        except BaseException:
            restored.stop()
            raise
    except BaseException:
        # A failed restore leaves nothing that could be mistaken for a good
        # one, only the server's log beside it.
        log_file = into / "restore.log"
        if log_file.exists():
            log_file.replace(into.parent / f"{into.name}.restore-failed.log")
        if created_into:
            shutil.rmtree(into, ignore_errors=True)
        else:
            for child in into.iterdir():
                _remove_tree(child)
        raise
    _write_description(
        into,
        {
            "kind": "restore",
            "backup": str(backup.directory),
            "wal_archive": str(archive) if archive else None,
            "target_time": target_time.isoformat() if target_time else None,
            "stopped_at": restored.stopped_at,
            "last_transaction_at": (
                restored.last_transaction_at.isoformat() if restored.last_transaction_at else None
            ),
            "timeline": restored.timeline,
            "restored_at": datetime.now(UTC).isoformat(),
        },
        name="restored.json",
    )
    if account is not None:
        os.chown(into / "restored.json", account.uid, account.gid)
    return restored


def _check_fresh(into: Path) -> None:
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise MeshError(
            f"{into} already exists and is not empty; a restore writes only into a new directory",
            hint="pass --into a directory that does not exist yet (never the live data directory)",
        )
    for parent in into.parents:
        if (parent / "PG_VERSION").exists():
            raise MeshError(
                f"{into} lies inside the PostgreSQL cluster {parent}",
                hint="restore next to the live data directory, not into it",
            )


def _prepare_cluster(
    pgdata: Path, own_archive: Path, archive: Path | None, target_time: datetime | None
) -> None:
    # Files that describe the server the backup was taken from, not this one.
    # pg_basebackup skips the socket but not its lock file (the embedded
    # server keeps its socket in the cluster when the path is short enough).
    for path in [*pgdata.glob(".s.PGSQL.*.lock"), *(pgdata / n for n in _NOT_RESTORED)]:
        if path.is_file():
            path.unlink()
    # A cluster whose configuration lived outside its data directory (Debian's
    # /etc/postgresql) gets a minimal one: local connections only.
    if not (pgdata / "postgresql.conf").exists():
        (pgdata / "postgresql.conf").write_text("# Written by bankmesh restore.\n")
    if not (pgdata / "pg_hba.conf").exists():
        (pgdata / "pg_hba.conf").write_text("local all all trust\nlocal replication all trust\n")
    if not (pgdata / "pg_ident.conf").exists():
        (pgdata / "pg_ident.conf").write_text("")
    own_archive.mkdir(parents=True, exist_ok=True)
    # Appended to postgresql.auto.conf, as pg_basebackup -R does: a later
    # line wins. Archiving goes to the restored cluster's own archive, so
    # its new timeline never mixes into the archive it is restored from.
    settings = dict(wal_archiving_settings(own_archive))
    if archive is not None:
        settings["restore_command"] = _restore_command(archive)
        settings["recovery_target_action"] = "promote"
        settings["recovery_target_timeline"] = "latest"
        if target_time is not None:
            settings["recovery_target_time"] = target_time.astimezone(UTC).isoformat()
        (pgdata / "recovery.signal").write_text("")
    lines = [f"\n# bankmesh restore, {datetime.now(UTC).isoformat()}"]
    lines += [f"{name} = {_conf_literal(value)}" for name, value in settings.items()]
    with (pgdata / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")


def _restore_command(archive: Path) -> str:
    directory = shlex.quote(str(archive)).replace("%", "%%")
    return f'cp {directory}/"%f" "%p"'


def _conf_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _socket_dir(pgdata: Path) -> Path:
    # A Unix socket path is limited to ~107 bytes: the cluster itself when it
    # is short enough, else a private directory under /tmp.
    if len(str(pgdata / ".s.PGSQL.5432").encode()) <= 100:
        return pgdata
    return Path(tempfile.mkdtemp(prefix="bankmesh-restore-"))


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int


def _server_account(archive: Path | None) -> _Account | None:
    """Who runs the restored server: us, unless we are root (PostgreSQL refuses root).

    As root: whoever owns the WAL archive (so restore_command can read it),
    else pgserver's user, as for the embedded server.
    """
    if os.geteuid() != 0:
        return None
    if archive is not None:
        owner = archive.stat()
        if owner.st_uid != 0:
            return _Account(owner.st_uid, owner.st_gid)
    import pwd

    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam("pgserver")
        return _Account(entry.pw_uid, entry.pw_gid)
    # As pgserver does when it first runs as root.
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run([useradd, "-s", "/bin/bash", "pgserver"], check=True, capture_output=True)
    entry = pwd.getpwnam("pgserver")
    return _Account(entry.pw_uid, entry.pw_gid)


def _hand_over(into: Path, account: _Account) -> None:
    for root, dirs, files in os.walk(into):
        os.lchown(root, account.uid, account.gid)
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), account.uid, account.gid)
    # That user must be able to reach the directory, as pgserver arranges
    # for the embedded cluster: o+x on every ancestor.
    for parent in into.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o005)


def _start_postmaster(
    tools: PgTools,
    pgdata: Path,
    socket_dir: Path,
    hba: Path,
    log_file: Path,
    account: _Account | None,
) -> subprocess.Popen[bytes]:
    if account is not None and socket_dir != pgdata:
        os.chown(socket_dir, account.uid, account.gid)
    argv = [
        tools("postgres"),
        "-D",
        str(pgdata),
        "-k",
        str(socket_dir),
        "-h",
        "",
        "-p",
        "5432",
        "-c",
        f"hba_file={hba}",
        "-c",
        "logging_collector=off",
    ]
    with log_file.open("ab") as log:
        if account is not None:
            os.chown(log_file, account.uid, account.gid)
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal is ours to handle.
            start_new_session=True,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
        )


_STOPPED = re.compile(
    r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, time .+"
)
_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
_NOT_RESTORED = ("log", ".handle_pids.json", "postmaster.opts", "postmaster.pid")
_NOT_REACHED = "recovery ended before configured recovery target was reached"


def _wait_for_recovery(restored: RestoredServer, reporter: BackupReporter, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    target = restored.target_time
    description = (
        f"Recovering to {_when(target)}" if target else "Recovering to the end of the archive"
    )
    with reporter.progress(description, "seconds") as advance:
        start: datetime | None = None
        while True:
            process = restored.process
            assert process is not None
            if process.poll() is not None:
                raise _recovery_failed(restored)
            if time.monotonic() > deadline:
                raise MeshError(
                    f"recovery did not finish within {timeout:.0f}s",
                    hint=f"see {restored.failure_log}; pass a longer --timeout for a large archive",
                )
            try:
                with psycopg.connect(restored.url, autocommit=True, connect_timeout=2) as conn:
                    row = conn.execute(
                        "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()"
                    ).fetchone()
            except psycopg.OperationalError:
                row = None  # not yet consistent: no connections
            if row is not None:
                in_recovery, replayed = bool(row[0]), row[1]
                if replayed is not None:
                    start = start or replayed
                    end = target or replayed
                    advance((replayed - start).total_seconds(), (end - start).total_seconds())
                if not in_recovery:
                    return
            time.sleep(0.2)


def _recovery_failed(restored: RestoredServer) -> MeshError:
    log = _tail(restored.log_file, 30)
    if _NOT_REACHED in log:
        last = re.search(r"last completed transaction was at log time (.+)", log)
        when = f" (the last transaction in it committed at {last.group(1)})" if last else ""
        return MeshError(
            f"the WAL archive ends before {_when(restored.target_time)}{when}",
            hint=(
                "recovery must see a transaction committed after the target to stop there; "
                "the segment being written is archived when it fills, after archive_timeout "
                "or at SELECT pg_switch_wal(). Retry later, choose an earlier time, or leave "
                "out --target-time to restore everything the archive holds"
            ),
        )
    return MeshError(
        f"PostgreSQL stopped while recovering the restored cluster:\n{log}",
        hint=f"the whole log is kept in {restored.failure_log}",
    )


def _finish_recovery(restored: RestoredServer) -> None:
    log = restored.log_file.read_text(errors="replace")
    stopped = _STOPPED.search(log)
    timeline = _TIMELINE.search(log)
    restored.stopped_at = stopped.group(0) if stopped else None
    restored.timeline = int(timeline.group(1)) if timeline else None
    with psycopg.connect(restored.url, autocommit=True) as conn:
        restored.last_transaction_at = _one(conn, "SELECT pg_last_xact_replay_timestamp()")
        restored.databases = [
            (str(name), int(size))
            for name, size in conn.execute(
                "SELECT datname, pg_database_size(datname) FROM pg_database"
                " WHERE NOT datistemplate ORDER BY datname"
            )
        ]
        # Recovery is over: its settings would only confuse a later start
        # (they take effect then; nothing to reload now). Setting the archive
        # settings again leaves one line each in postgresql.auto.conf.
        for name in (
            "restore_command",
            "recovery_target_time",
            "recovery_target_action",
            "recovery_target_timeline",
        ):
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        own_archive = restored.data_dir / "backups" / "wal"
        for name, value in wal_archiving_settings(own_archive).items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )


def _stop_postmaster(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)  # "fast" shutdown
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)  # "immediate"
        process.wait(10)


# --- files ------------------------------------------------------------------------


@contextlib.contextmanager
def _backup_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MeshError(
                f"another backup or prune is running in {root}",
                hint="wait for it to finish; scheduled runs should not overlap",
            ) from None
        yield


@contextlib.contextmanager
def _removed_on_failure(partial: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _new_name(root: Path, moment: datetime) -> str:
    base = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (root / name).exists() or (root / f"{name}{PARTIAL_SUFFIX}").exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _write_description(
    directory: Path, description: dict[str, Any], name: str = BACKUP_FILE
) -> None:
    temporary = directory / f".{name}.tmp"
    with temporary.open("w") as file:
        json.dump(description, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    temporary.rename(directory / name)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_tree(source: Path, target: Path, advance: Advance) -> None:
    total = _tree_size(source)
    done = 0
    for root, dirs, files in os.walk(source):
        relative = Path(root).relative_to(source)
        for name in dirs:
            (target / relative / name).mkdir(mode=0o700, exist_ok=True)
        for name in files:
            src = Path(root) / name
            if src.is_symlink():
                raise MeshError(
                    f"the backup holds a symbolic link, {src} (a tablespace?)",
                    hint="restore it by hand with pg_basebackup's --tablespace-mapping",
                )
            shutil.copy2(src, target / relative / name)
            done += src.stat().st_size
            advance(done, total)


def _unpack_tar_backup(source: Path, target: Path, advance: Advance) -> None:
    archives = [(source / "base.tar.gz", target), (source / "pg_wal.tar.gz", target / "pg_wal")]
    if any(
        p.name not in ("base.tar.gz", "pg_wal.tar.gz", "backup_manifest") for p in source.iterdir()
    ):
        raise MeshError(
            f"the backup in {source} holds more than the base and WAL archives (tablespaces?)",
            hint="restore it by hand: tar -xzf each file into its tablespace directory",
        )
    total = sum(p.stat().st_size for p, _ in archives)
    done = 0
    for archive, directory in archives:
        directory.mkdir(mode=0o700, exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                tar.extract(member, directory, filter="data")
                advance(done + _tell(tar.fileobj), total)
        done += archive.stat().st_size
        advance(done, total)


def _tell(fileobj: object) -> int:
    # tarfile wraps the gzip stream; its underlying file says how far we are.
    inner = getattr(fileobj, "fileobj", None)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return int(inner.tell()) if inner is not None else 0
    return 0


def _tree_size(path: Path) -> int:
    return sum(
        (Path(root) / name).lstat().st_size for root, _, files in os.walk(path) for name in files
    )


def _remove_tree(path: Path) -> int:
    size = _tree_size(path) if path.is_dir() else path.lstat().st_size
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def _remove_partials(root: Path) -> int:
    return sum(
        _remove_tree(child)
        for child in list(root.iterdir())
        if child.is_dir() and child.name.endswith(PARTIAL_SUFFIX)
    )


def _unlink(path: Path) -> int:
    size = path.stat().st_size
    path.unlink()
    return size


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- small helpers ----------------------------------------------------------------


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        return psycopg.connect(to_libpq_url(url), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshError(
            f"cannot connect to PostgreSQL at {server_label(url)}: {first}",
            hint="check that the server is running, and the URL's host, port, user and password",
        ) from exc


def _one(conn: psycopg.Connection[tuple[Any, ...]], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _server_now(url: str) -> datetime:
    with _connect(url) as conn:
        moment: datetime = _one(conn, "SELECT now()")
    return moment


def _run(argv: list[str], *, what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise MeshError(f"{what} failed: {message or f'exit code {result.returncode}'}")


def _wal_file_name(timeline: int, lsn: str, segment_size: int) -> str:
    high, _, low = lsn.partition("/")
    position = (int(high, 16) << 32) | int(low, 16)
    segment = position // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segment // per_id:08X}{segment % per_id:08X}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "the end of the archive"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
