"""Where the mesh's PostgreSQL comes from.

There are two sources and callers see one shape, a libpq URL:

* External: the operator's server, named by DATABASE_URL. Nothing is started
  or stopped here; we only create databases on it.
* Embedded: `pgserver` ships a real PostgreSQL 16 in a wheel, so a machine
  with nothing installed can run the mesh. Its cluster lives under
  ``<data_dir>/postgres`` and outlives the process that started it: a later
  start on the same directory reuses a running server or restarts the stopped
  one with its data intact. It listens only on a Unix socket, so it never
  fights another PostgreSQL for port 5432.

Every service gets its own database on that server (``ensure_database``), so
services cannot couple through each other's tables.

URLs stay in libpq form (``postgresql://user@host/db``) because psycopg, psql
and the service processes all take it; SQLAlchemy needs its driver named in
the scheme, which ``to_sqlalchemy_url`` adds at the edge.

Notes on pgserver that shape this module:

* Run as root, it creates a ``pgserver`` system user (with useradd) to own the
  cluster, because PostgreSQL refuses to run as root, and it adds o+rx to
  every ancestor of the data directory so that user can reach it.
* A Unix socket path is limited to ~107 bytes. When ``<pgdata>/.s.PGSQL.5432``
  would be longer, pgserver puts the socket in a short per-cluster directory
  under the user runtime dir (``/tmp/runtime-<uid>`` without XDG_RUNTIME_DIR)
  instead; the URL carries whichever it chose, read back from
  ``postmaster.pid``. Its pg_ctl call passes that directory through a shell
  unquoted, so a data directory with a space gets the short directory too.
* With ``cleanup_mode=None`` its handle never stops the server, and it caches
  one handle per data directory for the life of the process. Stopping is
  therefore done here, with PostgreSQL's own shutdown signals, and the cached
  handle is dropped so a later start in the same process really starts.
* It decides "already running" from the PID in ``postmaster.pid`` alone. After
  a reboot or container restart that PID can belong to an unrelated process,
  so a stale file is removed first (see ``_discard_stale_pidfile``).

WAL archiving: the embedded server copies every finished WAL segment into
``<data_dir>/backups/wal`` (``archive_command``), so that ``bankmesh backup``
plus that archive can restore any moment after a base backup. The settings
are PostgreSQL's own, written with ALTER SYSTEM (so they live in the
cluster's ``postgresql.auto.conf``) each time the server is started here.
``archive_mode`` only takes effect at a server start: a cluster that did not
have it yet is restarted once, when this call started it; one already
running (someone else's) keeps going and archives from its next restart.
pgserver ships no ``basic_archive`` module, hence a shell command; see
``archive_command`` for how it keeps the archive safe.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from mesh.runtime._pids import pid_alive
from mesh.runtime.errors import DatabaseUnreachable, MeshError

# PostgreSQL truncates longer identifiers silently, which would make a later
# existence check miss the database it created.
_MAX_IDENTIFIER_BYTES = 63
_LIBPQ_SCHEMES = ("postgresql", "postgres")
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
# A segment with any change in it is archived after this long even when it is
# not full: the most a restore can lose when the last segment is lost with the
# server. Each early switch still archives a whole 16 MB file.
ARCHIVE_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``postmaster.pid`` we need (see PostgreSQL's miscadmin.h)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL cluster under ``pgdata``.

    ``started`` is False when a server was already running on that directory;
    whoever did not start it should usually leave it running.
    """

    pgdata: Path
    pid: int
    socket_dir: Path
    port: int
    started: bool

    @property
    def url(self) -> str:
        """libpq URL of the ``postgres`` database, over the Unix socket."""
        return socket_url(self.socket_dir, port=self.port)

    @property
    def log_file(self) -> Path:
        return self.pgdata / "log"

    def is_running(self) -> bool:
        info = _read_postmaster(self.pgdata)
        return info is not None and info.pid == self.pid and pid_alive(self.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown) and wait until it has exited.

        Safe to call when it is already stopped.
        """
        try:
            if self.is_running():
                # SIGINT is PostgreSQL's "fast" shutdown: open transactions are
                # rolled back and a checkpoint is written, so the next start
                # needs no recovery. "smart" (SIGTERM) would wait for clients.
                os.kill(self.pid, signal.SIGINT)
                if not _wait_stopped(self.pgdata, self.pid, timeout):
                    # "immediate": committed data is safe (WAL), next start
                    # replays it. Better than leaving a server we claim to
                    # have stopped.
                    os.kill(self.pid, signal.SIGQUIT)
                    _wait_stopped(self.pgdata, self.pid, 5.0)
        except ProcessLookupError:
            pass
        finally:
            _forget_pgserver_handle(self.pgdata)


def start_embedded_postgres(data_dir: Path, *, archive_wal: bool = True) -> EmbeddedPostgres:
    """Start (or reuse) the embedded PostgreSQL whose cluster is ``data_dir/postgres``.

    Creates the cluster on first use; this takes a few seconds. With
    ``archive_wal`` (the default) the server archives its WAL into
    ``wal_archive_dir(data_dir)``; see the module notes. Raises MeshError with
    the server log location when PostgreSQL will not start.
    """
    pgdata = (Path(data_dir).expanduser() / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _discard_stale_pidfile(pgdata)
    before = _read_postmaster(pgdata)
    running_pid = before.pid if before is not None and pid_alive(before.pid) else None
    server = _start_pgserver(pgdata, running_pid)
    if archive_wal:
        archive_dir = wal_archive_dir(data_dir)
        _make_archive_dir(archive_dir, owner=pgdata)
        if configure_wal_archiving(server.url, archive_dir) and server.started:
            # Ours to restart: nobody was using it before this call.
            server.stop()
            server = _start_pgserver(pgdata, running_pid)
    return server


def wal_archive_dir(data_dir: Path) -> Path:
    """Where the embedded server of ``data_dir`` archives its WAL segments."""
    return (Path(data_dir).expanduser() / "backups" / "wal").resolve()


def archive_command(archive_dir: Path) -> str:
    """A shell ``archive_command`` that copies each WAL segment into ``archive_dir``.

    PostgreSQL runs it once per finished segment (``%p`` its path, ``%f`` its
    name) and only recycles the segment after it exits 0. So it:

    * never replaces a file: when ``%f`` is already archived it succeeds only
      if the contents are identical (a retry after a crash), and fails on a
      different file of the same name (two clusters sharing one archive);
    * copies to a hidden temporary name, flushes it to disk, then links it
      under its real name (``ln`` refuses to overwrite, and is atomic), so a
      reader never sees half a segment; then flushes the directory entry.

    ``sync FILE`` is GNU coreutils; elsewhere ``sync`` flushes everything.
    """
    # %-signs in the path would read as placeholders; PostgreSQL wants %%.
    directory = shlex.quote(str(archive_dir)).replace("%", "%%")
    return (
        f'd={directory}; f=%f; t="$d/.$f.tmp"; '
        'if [ -f "$d/$f" ]; then exec cmp -s "%p" "$d/$f"; fi; '
        'cp "%p" "$t" && { sync "$t" 2>/dev/null || sync; } && ln "$t" "$d/$f"; '
        's=$?; rm -f "$t"; [ "$s" -eq 0 ] && { sync "$d" 2>/dev/null || sync; }'
    )


def wal_archiving_settings(archive_dir: Path) -> dict[str, str]:
    """The server settings that archive every WAL segment into ``archive_dir``."""
    return {
        "archive_mode": "on",
        "archive_command": archive_command(archive_dir),
        "archive_timeout": str(ARCHIVE_TIMEOUT_SECONDS),
    }


def configure_wal_archiving(server_url: str, archive_dir: Path) -> bool:
    """Set (ALTER SYSTEM) and load the settings that archive WAL into ``archive_dir``.

    Needs a superuser. Returns True when the server must be restarted before
    it archives: ``archive_mode`` and ``wal_level`` are read only at start.
    """
    wanted = wal_archiving_settings(archive_dir)
    with psycopg.connect(to_libpq_url(server_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            ([*wanted, "wal_level"],),
        ).fetchall()
        current = {str(name): str(setting) for name, setting in rows}
        if current.get("wal_level") == "minimal":
            wanted["wal_level"] = "replica"  # "logical" archives too: left alone
        changed = {name: value for name, value in wanted.items() if current.get(name) != value}
        for name, value in changed.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    return current.get("archive_mode") not in ("on", "always") or "wal_level" in wanted


def _make_archive_dir(archive_dir: Path, *, owner: Path) -> None:
    archive_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The server runs as pgserver's own user (see the module notes): the
        # archive must be its to write, like the cluster.
        stat = owner.stat()
        if archive_dir.stat().st_uid != stat.st_uid:
            os.chown(archive_dir, stat.st_uid, stat.st_gid)


def _start_pgserver(pgdata: Path, running_pid: int | None) -> EmbeddedPostgres:
    with _quiet_import():
        import pgserver
        import pgserver.postgres_server
    pgserver.postgres_server.find_suitable_socket_dir = _choose_socket_dir
    try:
        pgserver.get_server(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, RuntimeError) as exc:
        raise MeshError(
            f"the embedded PostgreSQL in {pgdata} did not start: {exc}",
            hint=(
                f"see its log, {pgdata / 'log'}; or set DATABASE_URL to use an "
                "existing PostgreSQL instead"
            ),
        ) from exc

    info = _read_postmaster(pgdata)
    if info is None or info.socket_dir is None:
        raise MeshError(
            f"the embedded PostgreSQL in {pgdata} started but left no usable postmaster.pid",
            hint=f"see {pgdata / 'log'}; delete {pgdata} to start from an empty cluster",
        )
    return EmbeddedPostgres(
        pgdata=pgdata,
        pid=info.pid,
        socket_dir=info.socket_dir,
        port=info.port,
        started=info.pid != running_pid,
    )


def ensure_database(server_url: str, name: str, *, connect_timeout: int = 5) -> str:
    """Create database ``name`` on the server at ``server_url`` unless it exists.

    Works on any server we can connect to and create databases on; returns
    ``server_url`` pointed at the new database (same scheme, credentials and
    options). Raises DatabaseUnreachable when the server cannot be reached or
    refuses the login.
    """
    if not name or len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"database name must be 1-{_MAX_IDENTIFIER_BYTES} bytes: {name!r}")
    server = server_label(server_url)
    try:
        conn = psycopg.connect(
            to_libpq_url(server_url), autocommit=True, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {server}: {_first_line(exc)}",
            server=server,
            hint="check that the server is running and the URL's host, port, user and password",
        ) from exc
    with conn:
        # CREATE DATABASE cannot run in a transaction block, hence autocommit.
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                pass  # another process created it between our check and CREATE
            except pg_errors.InsufficientPrivilege as exc:
                raise MeshError(
                    f"the PostgreSQL user at {server} may not create database {name!r}",
                    hint=(
                        f"create it once as a superuser (CREATE DATABASE {name};) "
                        "or grant CREATEDB to the user in the URL"
                    ),
                ) from exc
    return with_database(server_url, name)


APP_GROUP_ROLE = "bankmesh_app"


def ensure_service_role(server_url: str, database: str, role: str) -> str | None:
    """Log in as ``role``, a member of ``bankmesh_app``, to ``database``: its URL.

    The service's migrations create the NOLOGIN group ``bankmesh_app`` and
    grant it the service's tables, but only SELECT and INSERT on the audit
    log; here ``role`` gets LOGIN, a fresh random password (on every start:
    nothing keeps an old one valid) and CONNECT on ``database``, which
    PUBLIC loses, so one service's role cannot open another's database.

    None when the group does not exist or we may not manage roles (the
    caller then keeps the admin URL and says so).
    """
    password = secrets.token_urlsafe(32)
    with psycopg.connect(
        to_libpq_url(with_database(server_url, database)), autocommit=True
    ) as conn:
        if (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_GROUP_ROLE,)).fetchone()
            is None
        ):
            return None
        name, group, db = (
            sql.Identifier(role),
            sql.Identifier(APP_GROUP_ROLE),
            sql.Identifier(database),
        )
        try:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(
                        sql.SQL(
                            "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                            "NOBYPASSRLS PASSWORD {}"
                        ).format(name, sql.Literal(password))
                    )
                else:
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                            name, sql.Literal(password)
                        )
                    )
                conn.execute(sql.SQL("GRANT {} TO {}").format(group, name))
                conn.execute(
                    sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db)
                )
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, name))
        except (
            pg_errors.InsufficientPrivilege,
            pg_errors.DuplicateObject,
            pg_errors.UniqueViolation,
        ):
            return None
    return with_database(with_user(server_url, role, password), database)


def with_user(url: str, user: str, password: str) -> str:
    """The same URL, logging in as ``user`` with ``password``."""
    to_libpq_url(url)
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in {"user", *_SECRET_QUERY_KEYS}
    ]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"
    return urlunsplit(parts._replace(netloc=netloc, query=_encode_query(query)))


def to_sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...``; a URL naming a driver is kept."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    if "+" in scheme:
        return url
    if scheme not in _LIBPQ_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    return f"postgresql+psycopg://{rest}"


def to_libpq_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix (``postgresql+psycopg://``) so libpq accepts the URL."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0] in _LIBPQ_SCHEMES:
        return f"postgresql://{rest}"
    raise ValueError(f"not a PostgreSQL URL: {redact_url(url)!r}")


def with_database(url: str, name: str) -> str:
    """The same URL, naming database ``name`` instead."""
    to_libpq_url(url)  # rejects anything that is not a PostgreSQL URL
    parts = urlsplit(url)
    # A dbname query parameter would override the path in libpq.
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(parts._replace(path="/" + quote(name, safe=""), query=_encode_query(query)))


def redact_url(url: str) -> str:
    """The URL without passwords, fit for files and terminals."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hosts}" if user else hosts
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in _SECRET_QUERY_KEYS
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=_encode_query(query)))


def server_label(url: str) -> str:
    """Where a URL points, for messages: ``host:port`` or the socket directory."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    if hosts:
        return hosts
    query = dict(parse_qsl(parts.query))
    if "host" in query:
        port = query.get("port", "5432")
        return f"{query['host']} (Unix socket, port {port})"
    return "the default local socket"


def socket_url(socket_dir: Path, *, port: int = 5432, database: str = "postgres") -> str:
    """libpq URL for a server listening on a Unix socket in ``socket_dir``."""
    query = {"host": str(socket_dir)}
    if port != 5432:
        query["port"] = str(port)
    return f"postgresql://postgres@/{quote(database, safe='')}?{_encode_query(query.items())}"


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # pgserver is imported late, inside functions: services import this module
    # for to_sqlalchemy_url and should not pay for it. Its import warns when
    # XDG_RUNTIME_DIR is unset; the /tmp/runtime-<uid> fallback is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        yield


def _choose_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
    # Replaces pgserver's chooser, which only checks the length: pg_ctl hands
    # the socket directory to postgres through a shell, unquoted, so a data
    # directory with a space in it ("~/My Projects/...") fails to start.
    with _quiet_import():
        from pgserver.utils import find_suitable_socket_dir

    if _shell_safe(pgdata):
        return find_suitable_socket_dir(pgdata, runtime_path)
    if not _shell_safe(runtime_path):
        raise MeshError(
            f"no directory for the embedded PostgreSQL socket: {pgdata} and "
            f"{runtime_path} both contain spaces or shell characters",
            hint="use a --data-dir without spaces, or set DATABASE_URL",
        )
    # Same naming as pgserver's own fallback, so either picks the same place.
    key = f"{pgdata}-{pgdata.stat().st_ino}"
    socket_dir = runtime_path / hashlib.sha256(key.encode()).hexdigest()[:10]
    socket_dir.mkdir(parents=True, exist_ok=True)
    return socket_dir


def _shell_safe(path: Path) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_./+:@%,=-]+", str(path)) is not None


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    # The file is written in stages while the server starts; lines may be missing.
    lines += [""] * (8 - len(lines))
    try:
        pid = int(lines[0])
    except ValueError:
        return None
    return _Postmaster(
        pid=pid,
        port=int(lines[3]) if lines[3].strip().isdigit() else 5432,
        socket_dir=Path(lines[4].strip()) if lines[4].strip() else None,
        status=lines[7].strip(),
    )


def _is_postgres_process(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped]  # a pgserver dependency; ships no stubs

    try:
        name: str = psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell; do not risk deleting a live server's pidfile
    return name.startswith("postgres")


def _discard_stale_pidfile(pgdata: Path) -> None:
    info = _read_postmaster(pgdata)
    if info is None or not pid_alive(info.pid) or _is_postgres_process(info.pid):
        # A dead PID is handled by pgserver and PostgreSQL themselves.
        return
    # The PID was recycled by an unrelated process: both pgserver ("already
    # running") and PostgreSQL ("lock file already exists") would trust it.
    with contextlib.suppress(FileNotFoundError):
        (pgdata / "postmaster.pid").unlink()


def _wait_stopped(pgdata: Path, pid: int, timeout: float) -> bool:
    # The postmaster is not our child (pg_ctl daemonizes it), so we cannot
    # wait() on it; PostgreSQL removes postmaster.pid as its last act.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _read_postmaster(pgdata)
        if info is None or info.pid != pid or not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def _forget_pgserver_handle(pgdata: Path) -> None:
    # pgserver caches one handle per data directory and hands it back on the
    # next get_server() even after the server stopped; its atexit hook would
    # then trip over the missing cache entry.
    with _quiet_import():
        from pgserver import PostgresServer
    server = PostgresServer._instances.pop(pgdata, None)
    if server is not None:
        atexit.unregister(server._cleanup)


def _encode_query(pairs: Iterable[tuple[str, str]]) -> str:
    # quote, not urlencode's default quote_plus: libpq does not decode "+".
    return urlencode(list(pairs), safe="/", quote_via=quote)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
