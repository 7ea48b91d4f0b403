"""``bankmesh up``: PostgreSQL, databases, migrations, services, then watch.

The order of ``launch``:

1. Refuse to run twice on one data directory (``run/supervisor.pid``): two
   supervisors would fight over logs, ready files and endpoints.json.
2. PostgreSQL: DATABASE_URL when given, else the embedded server.
3. Certificates (mesh.pki) under ``<data_dir>/pki``: the CA when missing, and
   an identity for every service and for the operator CLI, re-issued when it
   expires within ``renew_within``. Each service is started with
   ``BANKMESH_IDENTITY_DIR`` pointing at its own.
4. Per service, in order: its database, its migrations, its process. Later
   services may depend on earlier ones, so each is ready before the next
   starts.
5. Write endpoints.json and hand the running mesh to the reporter. The
   operator's certificate goes into its ``credentials`` only when the
   services answer TLS on their ports (checked, not assumed: a service may
   not use its identity yet); each one that serves plaintext is reported as
   a warning, because nothing should.
6. Watch until SIGINT/SIGTERM (exit 0) or until a service exits on its own
   (ServiceFailed after shutdown, so exit non-zero).
7. Shut down in reverse: services, then the embedded PostgreSQL if this run
   started it (one already running before is someone else's to stop).

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
from dataclasses import dataclass
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
    redact_url,
    start_embedded_postgres,
    to_libpq_url,
)
from mesh.runtime.supervisor import RunningService, ServiceSpec, Supervisor, listen_address
from mesh.tls import server_name, speaks_tls

DEFAULT_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(name="account", module="services.account"),
)


@dataclass(frozen=True)
class MeshConfig:
    """What ``bankmesh up`` runs. ``database_url=None`` means embedded PostgreSQL."""

    data_dir: Path
    listen_host: str = "127.0.0.1"
    database_url: str | None = None
    services: Sequence[ServiceSpec] = DEFAULT_SERVICES
    ready_timeout: float = 30.0
    grace_period: float = 10.0
    certificate_lifetime: timedelta = DEFAULT_LIFETIME
    # A certificate closer than this to expiry is re-issued at start, so a
    # mesh started now runs at least this long before one lapses.
    renew_within: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class RunningMesh:
    """Handed to the reporter once every service is ready."""

    services: list[RunningService]
    endpoints_file: Path
    database: str
    embedded_postgres: EmbeddedPostgres | None
    supervisor_pid: int


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
    data_dir = Path(config.data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(
        data_dir, ready_timeout=config.ready_timeout, grace_period=config.grace_period
    )
    embedded: EmbeddedPostgres | None = None
    signals = _StopSignals()
    with signals, _pid_file(supervisor.run_dir / "supervisor.pid", data_dir):
        try:
            try:
                server_url, embedded = _database_server(config, data_dir, reporter)
                identities = _issue_identities(config, data_dir, reporter)
                for spec in config.services:
                    _start_service(
                        supervisor, spec, server_url, config, reporter, identities[spec.name]
                    )
                credentials = _operator_credentials(supervisor, identities[OPERATOR], reporter)
                supervisor.write_endpoints(redact_url(server_url), credentials)
                signals.starting = False
            except _Interrupted as interrupted:
                reporter.stopping(f"{signal.Signals(interrupted.signum).name} during startup")
                return 0
            reporter.started(
                RunningMesh(
                    services=supervisor.services,
                    endpoints_file=supervisor.endpoints_file,
                    database=redact_url(server_url),
                    embedded_postgres=embedded,
                    supervisor_pid=os.getpid(),
                )
            )
            dead = _watch(supervisor, signals)
            if dead is not None:
                failure = supervisor.failure(dead)
                reporter.stopping(f"service {dead.name!r} exited unexpectedly")
                raise failure
            signum = signals.received or signal.SIGTERM
            reporter.stopping(f"received {signal.Signals(signum).name}")
            return 0
        finally:
            _shutdown(supervisor, embedded, signals, reporter)


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


def _operator_credentials(
    supervisor: Supervisor, operator: IssuedIdentity, reporter: Reporter
) -> dict[str, str]:
    """endpoints.json's credentials: the operator's files once services speak TLS."""
    plaintext = []
    for service in supervisor.services:
        try:
            secure = speaks_tls(service.address, server_name=server_name(service.name))
        except OSError as exc:
            # Ready but not answering: the watch that follows reports it if
            # it died; here it only cannot count as secured.
            reporter.warn(f"could not check the transport of service {service.name!r}: {exc}")
            secure = False
        else:
            if not secure:
                reporter.warn(
                    f"service {service.name!r} serves plaintext gRPC on {service.address}: "
                    "no mTLS, any local process can call it"
                )
        if not secure:
            plaintext.append(service)
    if len(plaintext) == len(supervisor.services):
        # Clients would fail every handshake; tell them plaintext instead.
        return {}
    return {
        "ca": str(operator.ca),
        "cert": str(operator.cert),
        "key": str(operator.key),
        "server_name_suffix": TRUST_DOMAIN,
    }


def _start_service(
    supervisor: Supervisor,
    spec: ServiceSpec,
    server_url: str,
    config: MeshConfig,
    reporter: Reporter,
    identity: IssuedIdentity,
) -> RunningService:
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
    listen = listen_address(config.listen_host)
    with reporter.step(f"Starting {spec.name}"):
        return supervisor.start(spec, database_url, listen, identity_dir=identity.directory)


def _watch(supervisor: Supervisor, signals: _StopSignals) -> RunningService | None:
    while not signals.event.wait(0.2):
        dead = supervisor.exited()
        if dead is not None:
            return dead
    return None


def _shutdown(
    supervisor: Supervisor,
    embedded: EmbeddedPostgres | None,
    signals: _StopSignals,
    reporter: Reporter,
) -> None:
    # From here on a signal only hurries the shutdown; raising out of it
    # would leave processes behind.
    signals.starting = False
    stopped = [s.name for s in supervisor.services if s.process.poll() is None]
    killed = supervisor.stop_all(hurry=lambda: signals.hurry)
    for name in killed:
        why = (
            "on a second interrupt"
            if signals.hurry
            else f"after ignoring SIGTERM for {supervisor.grace_period:.0f}s"
        )
        reporter.warn(f"service {name!r} was killed {why}")
    # A server that was already running is someone else's (an earlier run
    # that crashed, a developer's psql session): leave it running.
    if embedded is not None and embedded.started:
        embedded.stop()
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
