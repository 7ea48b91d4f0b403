"""The local runtime: embedded PostgreSQL and Redis, per-service databases, the supervisor.

The supervisor tests run a throwaway service package written to a temporary
directory (``fakesvc``) that implements the service-process contract: gRPC
health on BANKMESH_LISTEN, a ready file, graceful stop on SIGTERM, and an
``app.migrate`` that creates a table. At start it prints what it was given
(database, the endpoints.json it can already read, its trace file, its Redis
URL and whether that Redis answers PING, its FAKE_KEYS directory) so tests
can read it from its log. FAKE_MODE makes it crash or hang at start instead;
FAKE_PUBLIC=1 adds a public URL to its ready file, as the edge does.
``fakesvc.prepare`` is a preparation step (as identity's keys are) that
creates the FAKE_KEYS directory, or fails with FAKE_PREPARE=fail.

Whole-mesh tests run ``launch`` in a child process (``DRIVER``, configured by
a JSON argument) so that signals reach a real supervisor the way they do from
a terminal. Meshes that do not test the embedded PostgreSQL use the test
server (BANKMESH_TEST_DATABASE_URL), which is faster to reach than a fresh
cluster is to create; their fake services mostly need no database at all.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from typer.testing import CliRunner

from mesh.cli import app
from mesh.runtime._pids import pid_alive, read_pid
from mesh.runtime.errors import MeshError, ServiceFailed
from mesh.runtime.launcher import (
    DEFAULT_SERVICES,
    MAX_REPLICAS,
    MeshConfig,
    launch,
    with_port,
    with_replicas,
)
from mesh.runtime.postgres import (
    EmbeddedPostgres,
    ensure_database,
    redact_url,
    start_embedded_postgres,
    to_sqlalchemy_url,
    with_database,
)
from mesh.runtime.redis import redact_redis_url
from mesh.runtime.status import check_health, local_url
from mesh.runtime.supervisor import Preparation, ServiceSpec, Supervisor
from tests.support.launch import endpoints_complete

pytestmark = pytest.mark.integration

FAKE_MAIN = """
import json, os, signal, sys, threading, time
from concurrent import futures

mode = os.environ.get("FAKE_MODE", "serve")
print(f"fake service starting in mode {mode}", flush=True)
if mode == "crash":
    print("boom: the fake service cannot read its configuration", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(120)

import grpc
from grpc_health.v1 import health, health_pb2_grpc

print("database: " + os.environ.get("BANKMESH_DATABASE_URL", "<none>"), flush=True)
endpoints = os.environ.get("BANKMESH_ENDPOINTS", "<none>")
print("endpoints file: " + endpoints, flush=True)
seen = json.dumps(json.load(open(endpoints))) if os.path.exists(endpoints) else "<none>"
print("endpoints at start: " + seen, flush=True)
print("trace file: " + os.environ.get("BANKMESH_TRACE_FILE", "<none>"), flush=True)
print("keys dir: " + os.environ.get("FAKE_KEYS", "<none>"), flush=True)
redis_url = os.environ.get("BANKMESH_REDIS_URL")
print("redis: " + (redis_url or "<none>"), flush=True)
if redis_url:
    import redis
    print(f"redis ping: {redis.Redis.from_url(redis_url).ping()}", flush=True)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
listen = os.environ["BANKMESH_LISTEN"]
port = server.add_insecure_port(listen)
server.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
ready = os.environ["BANKMESH_READY_FILE"]
document = {"service": "fake", "address": f"{listen.rsplit(':', 1)[0]}:{port}", "pid": os.getpid()}
if os.environ.get("FAKE_PUBLIC") == "1":
    document["url"] = "https://" + document["address"]
with open(ready + ".tmp", "w") as f:
    json.dump(document, f)
os.replace(ready + ".tmp", ready)
while not stop.wait(0.1):
    pass
server.stop(grace=2).wait()
print("fake service stopped gracefully", flush=True)
"""

FAKE_APP = """
import os
import psycopg

def migrate(database_url: str) -> None:
    if os.environ.get("FAKE_MIGRATE") == "fail":
        raise RuntimeError("migration 0001 is broken")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fake_migrated (id int)")
"""

FAKE_PREPARE = """
import os
import sys
from pathlib import Path

keys = Path(os.environ["FAKE_KEYS"])
print(f"preparing {keys}", flush=True)
if os.environ.get("FAKE_PREPARE") == "fail":
    print("the fake keys are placeholders", file=sys.stderr)
    sys.exit(4)
keys.mkdir(mode=0o700, exist_ok=True)
(keys / "prepared").write_text("once")
print(f"prepared {keys}", flush=True)
"""

DRIVER = """
import json
import sys
from pathlib import Path

from mesh.runtime.errors import MeshError
from mesh.runtime.launcher import MeshConfig, launch
from mesh.runtime.supervisor import Preparation, ServiceSpec

def spec(options):
    prepare = options.pop("prepare", None)
    return ServiceSpec(
        module="fakesvc", prepare=Preparation(**prepare) if prepare else None, **options
    )

options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
config = MeshConfig(
    data_dir=Path(sys.argv[1]),
    services=[spec(options) for options in options.get("services", [{"name": "fake"}])],
    database_url=options.get("database_url"),
    redis_url=options.get("redis_url"),
    grace_period=5,
)
try:
    sys.exit(launch(config))
except MeshError as exc:
    print(f"error: {exc.message}", file=sys.stderr)
    sys.exit(1)
"""


@dataclass
class Mesh:
    """A supervisor running in a child process, and where it keeps things."""

    process: subprocess.Popen[str]
    data_dir: Path

    @property
    def endpoints(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.data_dir / "endpoints.json").read_text())
        return document

    def addresses(self, service: str) -> list[str]:
        listed: list[str] = self.endpoints["services"][service]
        return listed

    @property
    def fake_address(self) -> str:
        [address] = self.addresses("fake")
        return address

    def pid(self, process_name: str) -> int:
        ready = json.loads((self.data_dir / "run" / f"{process_name}.ready.json").read_text())
        return int(ready["pid"])

    @property
    def fake_pid(self) -> int:
        return self.pid("fake")

    def log(self, process_name: str) -> str:
        return (self.data_dir / "logs" / f"{process_name}.log").read_text()

    def seen_at_start(self, process_name: str) -> dict[str, Any] | None:
        """The endpoints.json a process could read as it started (None: there was none)."""
        line = next(
            line
            for line in self.log(process_name).splitlines()
            if line.startswith("endpoints at start: ")
        )
        seen = line.removeprefix("endpoints at start: ")
        return None if seen == "<none>" else dict(json.loads(seen))

    def postgres_pid(self) -> int | None:
        return read_pid(self.data_dir / "postgres" / "postmaster.pid")


@pytest.fixture(scope="module")
def fake_service_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake-service")
    package = root / "fakesvc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(FAKE_MAIN))
    (package / "app.py").write_text(textwrap.dedent(FAKE_APP))
    (package / "prepare.py").write_text(textwrap.dedent(FAKE_PREPARE))
    return root


def _environment(fake_service_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(fake_service_path), env.get("PYTHONPATH")) if p
    )
    env.update(extra)
    return env


def _start_mesh(
    data_dir: Path, fake_service_path: Path, options: dict[str, Any] | None = None
) -> Mesh:
    """``launch`` in a child process, returned once endpoints.json says every service is up."""
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(data_dir), json.dumps(options or {})],
        env=_environment(fake_service_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mesh = Mesh(process, data_dir)
    deadline = time.monotonic() + 30
    while not endpoints_complete(data_dir / "endpoints.json"):
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the mesh exited with {process.returncode} before it was up:\n{stderr}")
        if time.monotonic() > deadline:
            _stop_mesh(mesh)
            pytest.fail("the mesh did not mark endpoints.json complete within 30 s")
        time.sleep(0.05)
    return mesh


def _stop_mesh(mesh: Mesh) -> None:
    """Teardown for a test that failed half-way: leave no processes behind."""
    if mesh.process.poll() is None:
        mesh.process.send_signal(signal.SIGTERM)
        try:
            mesh.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            mesh.process.kill()
            mesh.process.communicate()
    pid = mesh.postgres_pid()
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGQUIT)


def _cli(*args: str, **env: str) -> tuple[int, str]:
    # Wide enough that rich does not wrap the messages asserted on.
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **env})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = start_embedded_postgres(tmp_path_factory.mktemp("embedded"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def running_mesh(
    tmp_path_factory: pytest.TempPathFactory, fake_service_path: Path
) -> Iterator[Mesh]:
    mesh = _start_mesh(tmp_path_factory.mktemp("mesh"), fake_service_path)
    yield mesh
    _stop_mesh(mesh)


# --- PostgreSQL -------------------------------------------------------------


def test_embedded_postgres_keeps_its_data_across_a_stop_and_start(tmp_path: Path) -> None:
    """Rows written before a stop are there after the next start on the same directory."""
    first = start_embedded_postgres(tmp_path)
    try:
        assert first.started
        url = ensure_database(first.url, "keep")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('survives restarts')")
        first.stop()
        assert not first.is_running()

        second = start_embedded_postgres(tmp_path)
        assert second.started
        assert second.pid != first.pid
        with psycopg.connect(with_database(second.url, "keep")) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("survives restarts",)]
    finally:
        start_embedded_postgres(tmp_path).stop()


def test_starting_embedded_postgres_again_reuses_the_running_server(
    embedded: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second start on a running cluster returns that server and does not claim it."""
    again = start_embedded_postgres(embedded.pgdata.parent)
    assert not again.started
    assert again.pid == embedded.pid
    assert again.url == embedded.url


def test_embedded_postgres_works_under_a_data_dir_too_long_for_a_unix_socket(
    tmp_path: Path,
) -> None:
    """A data dir whose socket path would pass the 107-byte limit still starts and connects."""
    data_dir = tmp_path / ("long-" * 12) / ("deeper-" * 6)
    assert len(str(data_dir / "postgres" / ".s.PGSQL.5432").encode()) > 107
    server = start_embedded_postgres(data_dir)
    try:
        assert len(str(server.socket_dir / ".s.PGSQL.5432").encode()) <= 107
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_embedded_postgres_works_under_a_data_dir_with_spaces(tmp_path: Path) -> None:
    """pg_ctl passes the socket directory through a shell unquoted; spaces must not break it."""
    server = start_embedded_postgres(tmp_path / "My Projects" / "bank mesh")
    try:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_ensure_database_creates_once_and_then_leaves_the_database_alone(
    embedded: EmbeddedPostgres,
) -> None:
    """The second call finds the database, keeps its contents and returns the same URL."""
    url = ensure_database(embedded.url, "bankmesh_idempotent")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (id int)")
    assert ensure_database(embedded.url, "bankmesh_idempotent") == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('marker') IS NOT NULL").fetchone() == (True,)


def test_ensure_database_is_idempotent_on_an_external_server() -> None:
    """Against BANKMESH_TEST_DATABASE_URL, repeated calls create one database and agree on its URL."""
    server_url = os.environ.get("BANKMESH_TEST_DATABASE_URL")
    if not server_url:
        pytest.skip("BANKMESH_TEST_DATABASE_URL is not set")
    name = f"bankmesh_test_{secrets.token_hex(4)}"
    try:
        first = ensure_database(server_url, name)
        assert ensure_database(server_url, name) == first
        with psycopg.connect(first) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
        with psycopg.connect(server_url) as conn:
            count = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert count.fetchone() == (1,)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_urls_convert_for_sqlalchemy_and_lose_their_secrets_for_display() -> None:
    """SQLAlchemy gets the psycopg driver named; endpoints.json never gets a password."""
    assert to_sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert to_sqlalchemy_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    redacted = redact_url("postgresql://bob:s3cret@db:5432/x?sslmode=require&password=s3cret")
    assert redacted == "postgresql://bob@db:5432/x?sslmode=require"
    assert with_database("postgresql://postgres@/postgres?host=/tmp/s", "bankmesh_account") == (
        "postgresql://postgres@/bankmesh_account?host=/tmp/s"
    )


def test_redis_urls_lose_their_passwords_and_keep_their_form_for_display() -> None:
    """A unix:// URL keeps its three slashes (redis-py needs them); passwords go everywhere."""
    assert redact_redis_url("unix:///tmp/x/redis.socket") == "unix:///tmp/x/redis.socket"
    assert redact_redis_url("redis://:s3cret@cache:6379/0") == "redis://cache:6379/0"
    assert redact_redis_url("redis://bob:s3cret@cache/1?password=s3cret&db=2") == (
        "redis://bob@cache/1?db=2"
    )


# --- Supervisor -------------------------------------------------------------


def test_a_service_that_crashes_at_start_fails_loudly_with_its_log_tail(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """The error names the service and its exit code and shows what it printed before dying."""
    spec = ServiceSpec(
        name="fake",
        module="fakesvc",
        env=_environment(fake_service_path, FAKE_MODE="crash"),
    )
    with pytest.raises(ServiceFailed) as failure:
        Supervisor(tmp_path).start(spec, database_url=None)
    message = str(failure.value)
    assert "'fake'" in message
    assert "exited with code 3" in message
    assert "boom: the fake service cannot read its configuration" in message
    assert failure.value.log_file == str(tmp_path / "logs" / "fake.log")


def test_a_service_that_never_becomes_ready_is_stopped_after_the_timeout(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """A silent service fails start within the ready timeout and is not left running."""
    spec = ServiceSpec(
        name="fake", module="fakesvc", env=_environment(fake_service_path, FAKE_MODE="hang")
    )
    supervisor = Supervisor(tmp_path, ready_timeout=1.0, grace_period=1.0)
    started = time.monotonic()
    with pytest.raises(ServiceFailed, match="did not report ready within 1s") as failure:
        supervisor.start(spec, database_url=None)
    assert time.monotonic() - started < 10
    assert "fake service starting in mode hang" in failure.value.log_tail
    assert supervisor.services == []


def test_failed_migrations_are_reported_with_their_log_tail(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """A migration error stops startup and shows the exception the migration raised."""
    spec = ServiceSpec(
        name="fake", module="fakesvc", env=_environment(fake_service_path, FAKE_MIGRATE="fail")
    )
    with pytest.raises(ServiceFailed, match="migrations for service 'fake' failed") as failure:
        Supervisor(tmp_path).migrate(spec, "postgresql://postgres@/unused")
    assert "RuntimeError: migration 0001 is broken" in failure.value.log_tail


def test_a_failed_preparation_is_reported_with_its_log_tail(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """A preparation that exits non-zero stops startup with what it said, in the service's log."""
    spec = ServiceSpec(
        name="fake",
        module="fakesvc",
        env=_environment(fake_service_path, FAKE_PREPARE="fail"),
        uses_database=False,
        data_dirs={"FAKE_KEYS": "fake-keys"},
        prepare=Preparation(module="fakesvc.prepare", what="fake keys"),
    )
    with pytest.raises(
        ServiceFailed, match="preparing fake keys for service 'fake' failed \\(exit code 4\\)"
    ) as failure:
        Supervisor(tmp_path).prepare(spec, None)
    assert "the fake keys are placeholders" in failure.value.log_tail
    assert f"preparing {tmp_path / 'fake-keys'}" in failure.value.log_tail
    assert failure.value.log_file == str(tmp_path / "logs" / "fake.log")


def test_a_fixed_port_for_several_processes_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """Two processes cannot share one port: MeshError naming the service, and no data dir made."""
    spec = ServiceSpec(name="edge", module="fakesvc", port=8443, replicas=2)
    with pytest.raises(MeshError, match="'edge' runs 2 processes on one port, 8443") as refused:
        launch(MeshConfig(data_dir=tmp_path / "mesh", services=[spec]))
    assert refused.value.hint == "give edge port 0 (each process then gets a free port of its own)"
    assert not (tmp_path / "mesh").exists()


def _identity_keys(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.runtime._identity_keys"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_identitys_key_step_creates_private_random_keys_once_and_keeps_them(
    tmp_path: Path,
) -> None:
    """First run: a signing key, data key 1 and the index key, 0600 in 0700; the second changes nothing."""
    env = {
        "BANKMESH_IDENTITY_KEY_DIR": str(tmp_path / "identity-keys"),
        "BANKMESH_IDENTITY_DATA_KEYS": str(tmp_path / "identity-data-keys"),
    }
    first = _identity_keys(env)
    assert first.returncode == 0, first.stdout + first.stderr
    signing, data = tmp_path / "identity-keys", tmp_path / "identity-data-keys"
    assert _mode(signing) == _mode(data) == 0o700
    keys = {path: path.read_bytes() for path in [*signing.iterdir(), *data.iterdir()]}
    assert {path.name for path in keys if path.parent == data} >= {"data-1.key", "blind-index.key"}
    assert len([path for path in keys if path.suffix == ".pem"]) == 1
    assert all(_mode(path) == 0o600 for path in keys)
    for name in ("data-1.key", "blind-index.key"):
        key = keys[data / name]
        assert len(key) == 32
        assert len(set(key)) > 1  # never a placeholder
    assert keys[data / "data-1.key"] != keys[data / "blind-index.key"]

    second = _identity_keys(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert {path: path.read_bytes() for path in [*signing.iterdir(), *data.iterdir()]} == keys


def test_identitys_key_step_refuses_a_placeholder_data_key(tmp_path: Path) -> None:
    """A data key of 32 zero bytes stops the step with identity's own reason, exit code 1."""
    data = tmp_path / "identity-data-keys"
    data.mkdir(mode=0o700)
    for name, key in (("data-1.key", bytes(32)), ("blind-index.key", os.urandom(32))):
        (data / name).write_bytes(key)
        (data / name).chmod(0o600)
    ran = _identity_keys(
        {
            "BANKMESH_IDENTITY_KEY_DIR": str(tmp_path / "identity-keys"),
            "BANKMESH_IDENTITY_DATA_KEYS": str(data),
        }
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "placeholder" in ran.stderr
    assert (data / "data-1.key").read_bytes() == bytes(32)


def test_the_mesh_writes_endpoints_for_a_ready_service(running_mesh: Mesh) -> None:
    """endpoints.json lists the service's real address, the database without secrets, no credentials."""
    endpoints = running_mesh.endpoints
    assert set(endpoints) == {"services", "urls", "database", "redis", "credentials", "complete"}
    assert endpoints["complete"] is True
    assert endpoints["urls"] == {}
    assert endpoints["redis"] is None
    assert running_mesh.fake_address.startswith("127.0.0.1:")
    assert not running_mesh.fake_address.endswith(":0")
    assert str(endpoints["database"]).startswith("postgresql://postgres@/postgres?host=")
    assert endpoints["credentials"] == {}
    health = check_health("fake", running_mesh.fake_address)
    assert health.healthy, health


def test_migrations_run_against_the_service_database_before_it_starts(
    running_mesh: Mesh,
) -> None:
    """The fake's migration created its table in bankmesh_fake, the URL the service was given."""
    database = with_database(str(running_mesh.endpoints["database"]), "bankmesh_fake")
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT to_regclass('fake_migrated') IS NOT NULL").fetchone()
    assert row == (True,)
    log = (running_mesh.data_dir / "logs" / "fake.log").read_text()
    assert "fakesvc.app.migrate finished" in log
    assert log.index("fakesvc.app.migrate finished") < log.index("fake service starting")
    assert "database: postgresql://postgres@/bankmesh_fake?host=" in log


def test_bankmesh_status_reports_each_service_as_serving(running_mesh: Mesh) -> None:
    """`bankmesh status` health-checks every service in endpoints.json and exits 0."""
    code, output = _cli("status", "--data-dir", str(running_mesh.data_dir))
    assert code == 0, output
    assert "fake" in output
    assert "SERVING" in output
    assert running_mesh.fake_address in output


def test_a_second_up_on_the_same_data_dir_is_refused(running_mesh: Mesh) -> None:
    """Two supervisors on one data dir would fight; the second says which pid to stop."""
    code, output = _cli("up", "--data-dir", str(running_mesh.data_dir))
    assert code == 1
    assert "already running" in output
    assert f"kill {running_mesh.process.pid}" in output


def test_sigterm_stops_the_services_and_the_embedded_postgres_cleanly(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """SIGTERM to the supervisor stops the service gracefully, then PostgreSQL, and exits 0."""
    mesh = _start_mesh(tmp_path, fake_service_path)
    try:
        fake_pid = mesh.fake_pid
        assert mesh.postgres_pid() is not None
        mesh.process.send_signal(signal.SIGTERM)
        _, stderr = mesh.process.communicate(timeout=20)
        assert mesh.process.returncode == 0, stderr
        assert not pid_alive(fake_pid)
        # PostgreSQL removes its pidfile last thing; its PID may linger as a
        # zombie where nothing reaps orphans, so the PID proves nothing.
        assert mesh.postgres_pid() is None
        assert "fake service stopped gracefully" in (tmp_path / "logs" / "fake.log").read_text()
        assert not (tmp_path / "endpoints.json").exists()
        assert not (tmp_path / "run" / "fake.ready.json").exists()
        assert not (tmp_path / "run" / "supervisor.pid").exists()
    finally:
        _stop_mesh(mesh)


def test_a_service_dying_while_running_stops_the_mesh_with_a_non_zero_exit(
    tmp_path: Path, fake_service_path: Path
) -> None:
    """The supervisor names the dead service, shuts the rest down and exits 1."""
    mesh = _start_mesh(tmp_path, fake_service_path)
    try:
        assert mesh.postgres_pid() is not None
        os.kill(mesh.fake_pid, signal.SIGKILL)
        _, stderr = mesh.process.communicate(timeout=20)
        assert mesh.process.returncode == 1
        assert "service 'fake'" in stderr
        assert "was killed by signal 9 while the mesh was running" in stderr
        assert mesh.postgres_pid() is None
    finally:
        _stop_mesh(mesh)


def test_an_unreachable_database_url_says_where_and_what_to_do(tmp_path: Path) -> None:
    """`bankmesh up` with a dead DATABASE_URL names its host and how to fix or drop it."""
    code, output = _cli(
        "up",
        "--data-dir",
        str(tmp_path),
        DATABASE_URL="postgresql://postgres:hunter2@127.0.0.1:1/postgres",
    )
    assert code == 1
    assert "127.0.0.1:1" in output
    assert "unset DATABASE_URL to use the embedded PostgreSQL" in output
    assert "hunter2" not in output


# --- The whole mesh: endpoints, replicas, Redis -----------------------------


@pytest.fixture(scope="module")
def two_services(
    tmp_path_factory: pytest.TempPathFactory, fake_service_path: Path, postgres_server_url: str
) -> Iterator[Mesh]:
    """``first`` then ``second`` (prepared, with a URL), no database, no Redis; a stale endpoints.json."""
    data_dir = tmp_path_factory.mktemp("two")
    stale = {"services": {"first": ["127.0.0.1:1"]}, "complete": False}
    (data_dir / "endpoints.json").write_text(json.dumps(stale))
    services = [
        {"name": "first", "uses_database": False},
        {
            "name": "second",
            "uses_database": False,
            "env": {"FAKE_PUBLIC": "1"},
            "data_dirs": {"FAKE_KEYS": "fake-keys"},
            "prepare": {"module": "fakesvc.prepare", "what": "fake keys"},
        },
    ]
    mesh = _start_mesh(
        data_dir,
        fake_service_path,
        {"services": services, "database_url": postgres_server_url},
    )
    yield mesh
    _stop_mesh(mesh)


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, fake_service_path: Path) -> Iterator[Mesh]:
    """Three processes of ``fake`` on the embedded PostgreSQL, so its migration runs too."""
    mesh = _start_mesh(
        tmp_path_factory.mktemp("replicated"),
        fake_service_path,
        {"services": [{"name": "fake", "replicas": 3}]},
    )
    yield mesh
    _stop_mesh(mesh)


def test_each_service_reads_the_services_started_before_it_from_bankmesh_endpoints(
    two_services: Mesh,
) -> None:
    """The second service starts with the first's address in endpoints.json; the first saw none."""
    endpoints_file = two_services.data_dir / "endpoints.json"
    assert endpoints_file.is_absolute()
    for name in ("first", "second"):
        assert f"endpoints file: {endpoints_file}\n" in two_services.log(name)
    # The stale file of an earlier run was gone before anything started.
    assert two_services.seen_at_start("first") is None
    seen = two_services.seen_at_start("second")
    assert seen is not None
    assert seen["services"] == {"first": two_services.addresses("first")}
    assert seen["complete"] is False
    assert two_services.endpoints["services"] == {
        "first": two_services.addresses("first"),
        "second": two_services.addresses("second"),
    }


def test_every_process_gets_a_trace_file_of_its_own_under_the_data_dir(
    two_services: Mesh,
) -> None:
    """BANKMESH_TRACE_FILE is <data_dir>/traces/<service>.jsonl, an absolute path."""
    for name in ("first", "second"):
        trace_file = two_services.data_dir / "traces" / f"{name}.jsonl"
        assert f"trace file: {trace_file}\n" in two_services.log(name)


def test_a_services_data_dirs_are_absolute_and_prepared_once_before_it_starts(
    two_services: Mesh,
) -> None:
    """FAKE_KEYS is <data_dir>/fake-keys; the preparation made it before the service started."""
    keys = two_services.data_dir / "fake-keys"
    log = two_services.log("second")
    assert f"keys dir: {keys}\n" in log
    assert log.index("preparing fake keys (fakesvc.prepare)") < log.index(f"prepared {keys}")
    assert log.index(f"prepared {keys}") < log.index("fake service starting")
    assert (keys / "prepared").read_text() == "once"
    assert "keys dir: <none>\n" in two_services.log("first")


def test_a_public_url_in_a_ready_file_is_listed_under_urls(two_services: Mesh) -> None:
    """The URL the second service reported is in endpoints.json by service; the first has none."""
    [address] = two_services.addresses("second")
    assert two_services.endpoints["urls"] == {"second": [f"https://{address}"]}


def test_no_redis_is_started_or_passed_when_no_service_uses_it(two_services: Mesh) -> None:
    """Without a Redis user there is no redis-server, no BANKMESH_REDIS_URL and no redis entry."""
    assert "redis: <none>\n" in two_services.log("first")
    assert not (two_services.data_dir / "redis").exists()
    assert two_services.endpoints["redis"] is None


def test_replicas_are_all_listed_and_each_serves_on_its_own_port(replicated: Mesh) -> None:
    """endpoints.json lists one address per replica, all different, and each answers health."""
    addresses = replicated.addresses("fake")
    assert len(addresses) == 3
    assert len(set(addresses)) == 3
    for address in addresses:
        health = check_health("fake", address)
        assert health.healthy, health


def test_replicas_keep_their_own_logs_and_ready_files_and_migrate_once(replicated: Mesh) -> None:
    """fake-1..3 each log and report ready apart; the migration ran once, before fake-1."""
    pids = {replicated.pid(f"fake-{n}") for n in (1, 2, 3)}
    assert len(pids) == 3
    assert not (replicated.data_dir / "logs" / "fake.log").exists()
    first = replicated.log("fake-1")
    assert first.index("fakesvc.app.migrate finished") < first.index("fake service starting")
    for n in (2, 3):
        log = replicated.log(f"fake-{n}")
        assert "fake service starting" in log
        assert "migrate" not in log
        assert f"trace file: {replicated.data_dir / 'traces' / f'fake-{n}.jsonl'}" in log


def test_bankmesh_status_shows_one_row_per_replica(replicated: Mesh) -> None:
    """Replicas appear as fake-1..fake-3, each with its address and SERVING."""
    code, output = _cli("status", "--data-dir", str(replicated.data_dir))
    assert code == 0, output
    rows = [line for line in output.splitlines() if line.startswith("│ fake")]
    assert [row.split()[1] for row in rows] == ["fake-1", "fake-2", "fake-3"]
    assert all("SERVING" in row for row in rows)
    assert {row.split()[3] for row in rows} == set(replicated.addresses("fake"))


def test_a_replica_dying_stops_the_mesh_with_a_failure_that_names_it(
    tmp_path: Path, fake_service_path: Path, postgres_server_url: str
) -> None:
    """Killing replica 2 of 2 stops replica 1 gracefully and exits 1, naming the replica."""
    services = [{"name": "fake", "replicas": 2, "uses_database": False}]
    mesh = _start_mesh(
        tmp_path, fake_service_path, {"services": services, "database_url": postgres_server_url}
    )
    try:
        victim = mesh.pid("fake-2")
        os.kill(victim, signal.SIGKILL)
        _, stderr = mesh.process.communicate(timeout=20)
        assert mesh.process.returncode == 1
        assert (
            f"service 'fake' (replica 2 of 2, pid {victim}) was killed by signal 9 "
            "while the mesh was running"
        ) in stderr
        assert "fake service stopped gracefully" in mesh.log("fake-1")
        assert not (tmp_path / "endpoints.json").exists()
    finally:
        _stop_mesh(mesh)


def test_the_embedded_redis_serves_the_services_that_use_it_and_stops_with_the_mesh(
    tmp_path: Path, fake_service_path: Path, postgres_server_url: str
) -> None:
    """Only the Redis user gets BANKMESH_REDIS_URL and PINGs it; after SIGTERM nothing answers."""
    services = [
        {"name": "cache", "uses_database": False, "uses_redis": True},
        {"name": "plain", "uses_database": False},
    ]
    mesh = _start_mesh(
        tmp_path, fake_service_path, {"services": services, "database_url": postgres_server_url}
    )
    try:
        url = mesh.endpoints["redis"]
        assert url.startswith("unix://")
        assert f"redis: {url}\nredis ping: True\n" in mesh.log("cache")
        assert "redis: <none>\n" in mesh.log("plain")
        mesh.process.send_signal(signal.SIGTERM)
        _, stderr = mesh.process.communicate(timeout=20)
        assert mesh.process.returncode == 0, stderr
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        assert (tmp_path / "redis" / "redis.db").exists()  # saved on the way down
    finally:
        _stop_mesh(mesh)


def test_a_redis_url_that_answers_is_given_to_the_services_that_use_it_and_left_running(
    tmp_path: Path, fake_service_path: Path, postgres_server_url: str, redis_url: str
) -> None:
    """REDIS_URL reaches the Redis user as BANKMESH_REDIS_URL; stopping the mesh leaves it be."""
    services = [{"name": "cache", "uses_database": False, "uses_redis": True}]
    mesh = _start_mesh(
        tmp_path,
        fake_service_path,
        {"services": services, "database_url": postgres_server_url, "redis_url": redis_url},
    )
    try:
        assert f"redis: {redis_url}\nredis ping: True\n" in mesh.log("cache")
        assert mesh.endpoints["redis"] == redact_redis_url(redis_url)
        assert not (tmp_path / "redis").exists()
        mesh.process.send_signal(signal.SIGTERM)
        _, stderr = mesh.process.communicate(timeout=20)
        assert mesh.process.returncode == 0, stderr
        assert redis.Redis.from_url(redis_url).ping()
    finally:
        _stop_mesh(mesh)


def test_an_unreachable_redis_url_stops_startup_with_a_mesh_error(
    tmp_path: Path, postgres_server_url: str
) -> None:
    """REDIS_URL that does not answer PING fails before any service starts, with a hint."""
    config = MeshConfig(
        data_dir=tmp_path,
        database_url=postgres_server_url,
        redis_url="redis://:hunter2@127.0.0.1:1/0",
        services=[ServiceSpec(name="cache", module="fakesvc", uses_redis=True)],
    )
    with pytest.raises(MeshError) as failure:
        launch(config)
    assert "Redis at 127.0.0.1:1 does not answer PING" in failure.value.message
    assert "(from REDIS_URL)" in failure.value.message
    assert failure.value.hint is not None
    assert "unset REDIS_URL to use the embedded Redis" in failure.value.hint
    assert "hunter2" not in failure.value.message
    assert not (tmp_path / "logs").exists()


def test_bankmesh_up_explains_an_unreachable_redis_url(
    tmp_path: Path, postgres_server_url: str
) -> None:
    """The CLI prints the Redis host, what to do, no password, and exits 1."""
    code, output = _cli(
        "up",
        "--data-dir",
        str(tmp_path),
        DATABASE_URL=postgres_server_url,
        REDIS_URL="redis://:hunter2@127.0.0.1:1/0",
    )
    assert code == 1, output
    assert "error: Redis at 127.0.0.1:1 does not answer PING" in output
    assert "hint: start Redis on 127.0.0.1:1 or fix REDIS_URL" in output
    assert "hunter2" not in output


def test_the_default_mesh_starts_identity_after_account_payment_after_risk_and_the_edge_last() -> (
    None
):
    """Payment calls account and risk, the edge calls everyone: each comes after what it calls."""
    assert [spec.name for spec in DEFAULT_SERVICES] == [
        "account",
        "identity",
        "risk",
        "payment",
        "edge",
    ]
    assert [spec.name for spec in DEFAULT_SERVICES if spec.uses_redis] == [
        "identity",
        "risk",
        "edge",
    ]
    assert [spec.name for spec in DEFAULT_SERVICES if not spec.uses_database] == ["edge"]
    assert all(spec.port == 0 for spec in DEFAULT_SERVICES)


def test_identity_gets_its_two_key_directories_under_the_data_dir_and_a_key_step() -> None:
    """Signing keys in identity-keys, data keys in identity-data-keys, made by identity's code."""
    identity = next(spec for spec in DEFAULT_SERVICES if spec.name == "identity")
    assert identity.data_dirs == {
        "BANKMESH_IDENTITY_KEY_DIR": "identity-keys",
        "BANKMESH_IDENTITY_DATA_KEYS": "identity-data-keys",
    }
    assert identity.prepare == Preparation(
        module="mesh.runtime._identity_keys", what="identity keys"
    )
    assert all(not spec.data_dirs for spec in DEFAULT_SERVICES if spec.name != "identity")


def test_replica_counts_apply_to_the_services_named() -> None:
    """payment=2 and account=3 change those two services and leave risk at one process."""
    services = with_replicas(DEFAULT_SERVICES, ["payment=2", " account = 3 "])
    assert {spec.name: spec.replicas for spec in services} == {
        "account": 3,
        "identity": 1,
        "risk": 1,
        "payment": 2,
        "edge": 1,
    }
    payment = next(spec for spec in services if spec.name == "payment")
    assert [payment.process_name(n) for n in (1, 2)] == ["payment-1", "payment-2"]
    assert DEFAULT_SERVICES[0].process_name(1) == "account"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("payment", "expected SERVICE=COUNT"),
        ("=2", "expected SERVICE=COUNT"),
        (
            "ledger=2",
            "no service 'ledger' in 'ledger=2'; "
            "the mesh runs account, identity, risk, payment, edge",
        ),
        ("payment=0", f"must be a whole number from 1 to {MAX_REPLICAS}"),
        (f"payment={MAX_REPLICAS + 1}", f"must be a whole number from 1 to {MAX_REPLICAS}"),
        ("payment=two", "must be a whole number"),
        ("payment=-1", "must be a whole number"),
    ],
)
def test_replica_counts_that_make_no_sense_are_refused_with_a_reason(
    option: str, message: str
) -> None:
    """Malformed options, unknown services and counts outside 1..8 each say what is wrong."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_replicas(DEFAULT_SERVICES, [option])


def test_a_service_given_replicas_twice_is_refused() -> None:
    """Two --replicas for one service would leave the count ambiguous."""
    with pytest.raises(ValueError, match="payment is given more than once"):
        with_replicas(DEFAULT_SERVICES, ["payment=2", "payment=3"])


def test_bankmesh_up_refuses_bad_replicas_before_starting_anything(tmp_path: Path) -> None:
    """A usage error (exit 2) naming --replicas and the services there are; nothing is created."""
    code, output = _cli("up", "--data-dir", str(tmp_path / "mesh"), "--replicas", "ledger=2")
    assert code == 2
    assert "--replicas" in output
    assert "the mesh runs account, identity, risk, payment, edge" in output
    assert not (tmp_path / "mesh").exists()


def test_a_port_given_to_one_service_leaves_the_others_on_free_ports() -> None:
    """`bankmesh up --edge-port 8443` fixes the edge's port and nothing else."""
    services = with_port(DEFAULT_SERVICES, "edge", 8443)
    assert {spec.name: spec.port for spec in services} == {
        "account": 0,
        "identity": 0,
        "risk": 0,
        "payment": 0,
        "edge": 8443,
    }


def test_bankmesh_up_refuses_edge_replicas_on_one_fixed_port(tmp_path: Path) -> None:
    """Two edges cannot share --edge-port: exit 1 with the fix (port 0); nothing is created."""
    code, output = _cli("up", "--data-dir", str(tmp_path / "mesh"), "--replicas", "edge=2")
    assert code == 1, output
    assert "error: service 'edge' runs 2 processes on one port, 8443" in output
    assert "hint: give edge port 0" in output
    assert not (tmp_path / "mesh").exists()


def test_a_url_on_every_address_is_dialled_on_loopback_where_the_certificate_names_it() -> None:
    """https://0.0.0.0:8443 becomes 127.0.0.1, [::] localhost; other hosts stay as they are."""
    assert local_url("https://0.0.0.0:8443") == "https://127.0.0.1:8443"
    assert local_url("https://[::]:8443") == "https://localhost:8443"
    assert local_url("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    assert local_url("https://edge.example") == "https://edge.example"
