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
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
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


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) the embedded PostgreSQL whose cluster is ``data_dir/postgres``.

    Creates the cluster on first use; this takes a few seconds. Raises
    MeshError with the server log location when PostgreSQL will not start.
    """
    pgdata = (Path(data_dir).expanduser() / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _discard_stale_pidfile(pgdata)
    before = _read_postmaster(pgdata)
    running_pid = before.pid if before is not None and pid_alive(before.pid) else None

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
