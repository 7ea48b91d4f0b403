"""Starting service processes and watching them.

The service-process contract, which every service (account, risk, identity,
payment and the edge) implements:

* It is started as ``python -m <module>`` (``services.<name>``) with
  ``BANKMESH_DATABASE_URL`` (libpq URL of its own database),
  ``BANKMESH_REDIS_URL`` (only for a service that uses Redis),
  ``BANKMESH_LISTEN`` (``host:port``; port 0 picks a free one),
  ``BANKMESH_READY_FILE``, ``BANKMESH_IDENTITY_DIR`` (its certificate,
  key and the mesh CA, see mesh.pki), ``BANKMESH_ENDPOINTS`` (the absolute
  path of endpoints.json, to find the services started before it) and
  ``BANKMESH_TRACE_FILE`` (``<data_dir>/traces/<process>.jsonl``), plus
  one absolute path per entry of ``ServiceSpec.data_dirs`` (identity's key
  directories, say: ``BANKMESH_IDENTITY_KEY_DIR=<data_dir>/identity-keys``).
* Once it serves, it writes ``{"service": ..., "address": "host:port",
  "pid": ...}`` to the ready file atomically (write elsewhere, rename). The
  address is how the supervisor learns which port 0 became. A process that
  serves people rather than the mesh (the HTTPS edge) adds its public
  ``"url"``.
* SIGTERM asks it to stop gracefully.
* It does not migrate its database. ``<module>.app.migrate(database_url)`` does,
  and the supervisor runs it before starting the service, so several replicas
  never race on a schema and a failed migration is reported before anything
  listens. Likewise ``ServiceSpec.prepare`` (identity's keys), a module run
  once with the service's environment before its processes start.

A service may run as several processes (``ServiceSpec.replicas``), each on a
port of its own. A process is named after its service, or ``<service>-<n>``
when there are several; that name keys its log, ready file and trace file, so
replicas never write into each other's files. Migrations run once per service,
into the first process's log, before any replica starts.

Each process runs in its own process group: Ctrl-C in the terminal reaches only
the supervisor, which then stops processes in reverse start order with SIGTERM,
and SIGKILL after a grace period. A process's stdout and stderr go to
``<data_dir>/logs/<process>.log`` (the previous run's log is kept as
``.log.1``); when a process fails, the error carries the tail of that log so the
cause is on screen.

``<data_dir>/endpoints.json`` tells clients where each service listens: every
address of every ready process, grouped by service (``{"services": {"payment":
["127.0.0.1:4001", "127.0.0.1:4002"]}, ...}``), and the public URLs of those
that have one (``{"urls": {"edge": ["https://127.0.0.1:8443"]}}``). The
launcher rewrites it after each process becomes ready, so a service started later finds the earlier ones,
marks it ``"complete": true`` once all are up, and it is removed on a clean
stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from mesh.runtime.errors import ServiceFailed

_TAIL_LINES = 30
_POLL_INTERVAL = 0.05
_BIND_FAILURES = ("address already in use", "failed to bind", "cannot assign requested address")


@dataclass(frozen=True)
class Preparation:
    """A step run once before a service's processes start, after its migrations.

    ``module`` runs as ``python -m <module>`` with the service's environment
    (its ``data_dirs`` included) and output into its first process's log; a
    non-zero exit stops the start with that log's tail. ``what`` names it for
    the operator: "Creating <what> in ..." the first time, when one of the
    service's ``data_dirs`` does not exist yet, "Checking <what> in ..." after.
    """

    module: str
    what: str


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the mesh and how to run it.

    ``env`` is added to the service's environment (and its migration's).
    A service without a database (the edge, say) sets ``uses_database=False``:
    no database is created, no migrations run, no URL is passed. One with
    ``uses_redis=True`` is given ``BANKMESH_REDIS_URL``. ``replicas`` is how
    many processes serve it. ``port`` is where it listens (0: a free port;
    another number only for a single process). ``data_dirs`` maps variables
    to directories under the data directory, passed as absolute paths
    (``{"BANKMESH_IDENTITY_KEY_DIR": "identity-keys"}``); the service, or its
    ``prepare`` step, creates them. ``prepare`` runs once before it starts.
    ``audited=True`` (a service that keeps an audit log): the launcher runs
    it as a login role of ``bankmesh_app`` rather than as the admin, and
    gives it a checkpoint signing key (``BANKMESH_AUDIT_KEY``) and file
    (``BANKMESH_AUDIT_CHECKPOINTS``).
    """

    name: str
    module: str
    env: Mapping[str, str] = field(default_factory=dict)
    uses_database: bool = True
    uses_redis: bool = False
    replicas: int = 1
    port: int = 0
    data_dirs: Mapping[str, str] = field(default_factory=dict)
    prepare: Preparation | None = None
    audited: bool = False

    def process_name(self, replica: int) -> str:
        """``payment`` for a single process, ``payment-2`` for the second of several."""
        return self.name if self.replicas == 1 else f"{self.name}-{replica}"

    @property
    def database_name(self) -> str:
        return f"bankmesh_{self.name}"

    @property
    def migrations_module(self) -> str:
        return f"{self.module}.app"


@dataclass(frozen=True)
class RunningService:
    """A started service process that reported ready."""

    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    address: str
    log_file: Path
    replica: int = 1
    # The public URL its ready file gave (the edge's https://...), if any.
    url: str | None = None
    # Its certificate, key and the mesh CA (BANKMESH_IDENTITY_DIR), if it was given one.
    identity_dir: Path | None = None

    @property
    def name(self) -> str:
        """The service's name, shared by its replicas."""
        return self.spec.name

    @property
    def process_name(self) -> str:
        """This process's own name: the service's, or ``<service>-<n>`` for a replica."""
        return self.spec.process_name(self.replica)

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> str:
        """How messages name it: ``service 'payment' (replica 2 of 3, pid 4242)``."""
        if self.spec.replicas == 1:
            return f"service {self.name!r} (pid {self.pid})"
        return f"service {self.name!r} (replica {self.replica} of {self.spec.replicas}, pid {self.pid})"


class Supervisor:
    """Runs service processes under the contract above, all under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        python: str = sys.executable,
        ready_timeout: float = 30.0,
        migrate_timeout: float = 300.0,
        grace_period: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.trace_dir = self.data_dir / "traces"
        self.endpoints_file = self.data_dir / "endpoints.json"
        self.python = python
        self.ready_timeout = ready_timeout
        self.migrate_timeout = migrate_timeout
        self.grace_period = grace_period
        self._services: dict[str, RunningService] = {}
        # Started but not yet ready: still ours to stop if startup is interrupted.
        self._starting: dict[str, subprocess.Popen[bytes]] = {}
        self._fresh_logs: set[str] = set()

    @property
    def services(self) -> list[RunningService]:
        """Processes that reported ready, in start order (replicas one by one)."""
        return list(self._services.values())

    def addresses(self) -> dict[str, list[str]]:
        """Every ready process's address, grouped by service, in start order."""
        grouped: dict[str, list[str]] = {}
        for service in self._services.values():
            grouped.setdefault(service.name, []).append(service.address)
        return grouped

    def urls(self) -> dict[str, list[str]]:
        """The public URLs of the ready processes that have one, grouped by service."""
        grouped: dict[str, list[str]] = {}
        for service in self._services.values():
            if service.url:
                grouped.setdefault(service.name, []).append(service.url)
        return grouped

    def data_dir_of(self, spec: ServiceSpec, variable: str) -> Path:
        """The absolute directory ``spec`` gets in ``variable`` (one of its ``data_dirs``)."""
        return self.data_dir / spec.data_dirs[variable]

    def log_file(self, process_name: str) -> Path:
        return self.log_dir / f"{process_name}.log"

    def migrate(self, spec: ServiceSpec, database_url: str) -> None:
        """Run ``<module>.app.migrate(database_url)`` in a child process.

        A child, not this process: migrations import the service's code and
        Alembic's env.py usually reconfigures logging, neither of which should
        leak into the supervisor. Output goes to the log of the service's
        first process, which starts next.
        """
        self._run_once(
            spec,
            database_url,
            ["mesh.runtime._migrate", spec.migrations_module],
            what=f"migrations for service {spec.name!r}",
            banner=f"migrating {spec.migrations_module}",
            module=spec.migrations_module,
            timeout_hint="a migration may be waiting on a lock held by another client",
        )

    def prepare(self, spec: ServiceSpec, database_url: str | None) -> None:
        """Run ``spec.prepare`` in a child process, as ``migrate`` runs migrations.

        Its output goes to the log of the service's first process. Raises
        ServiceFailed, with that log's tail, when it fails or hangs.
        """
        if spec.prepare is None:
            return
        module = spec.prepare.module
        self._run_once(
            spec,
            database_url if spec.uses_database else None,
            [module],
            what=f"preparing {spec.prepare.what} for service {spec.name!r}",
            banner=f"preparing {spec.prepare.what} ({module})",
            module=module,
            timeout_hint=f"see {self.log_file(spec.process_name(1))} for where it got stuck",
        )

    def _run_once(
        self,
        spec: ServiceSpec,
        database_url: str | None,
        arguments: list[str],
        *,
        what: str,
        banner: str,
        module: str,
        timeout_hint: str,
    ) -> None:
        log_name = spec.process_name(1)
        log_path = self.log_file(log_name)
        env = self._environment(spec, database_url)
        with self._open_log(log_name, banner) as log:
            offset = log.tell()
            proc = subprocess.Popen(
                [self.python, "-m", *arguments],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            code = proc.wait(timeout=self.migrate_timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ServiceFailed(
                f"{what} did not finish within {self.migrate_timeout:.0f}s",
                service=spec.name,
                log_tail=_tail(log_path, offset),
                log_file=str(log_path),
                hint=timeout_hint,
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        if code != 0:
            tail = _tail(log_path, offset)
            raise ServiceFailed(
                f"{what} failed (exit code {code})",
                service=spec.name,
                log_tail=tail,
                log_file=str(log_path),
                hint=_failure_hint(module, tail, log_path),
            )

    def start(
        self,
        spec: ServiceSpec,
        database_url: str | None,
        listen: str = "127.0.0.1:0",
        *,
        identity_dir: Path | None = None,
        redis_url: str | None = None,
        replica: int = 1,
        endpoints_file: Path | None = None,
    ) -> RunningService:
        """Start process ``replica`` (1-based) of ``spec`` and wait until it reports ready.

        ``identity_dir`` becomes the service's ``BANKMESH_IDENTITY_DIR`` and
        ``redis_url`` its ``BANKMESH_REDIS_URL`` (required when it uses Redis).
        ``endpoints_file`` replaces this supervisor's endpoints.json as the
        process's ``BANKMESH_ENDPOINTS``: the chaos harness points a service at
        fault-injecting proxies with it.
        Raises ServiceFailed, with the tail of the process's log, when it
        exits first or stays silent for ``ready_timeout`` seconds; the process
        is gone by then.
        """
        if not 1 <= replica <= spec.replicas:
            raise ValueError(
                f"replica {replica} of service {spec.name!r} is not 1..{spec.replicas}"
            )
        if spec.uses_redis and not redis_url:
            raise ValueError(f"service {spec.name!r} uses Redis: pass redis_url")
        name = spec.process_name(replica)
        if name in self._services or name in self._starting:
            raise ValueError(f"process {name!r} is already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.run_dir / f"{name}.ready.json"
        # A file left by an earlier run would make a dead service look ready.
        ready_file.unlink(missing_ok=True)
        env = self._environment(spec, database_url if spec.uses_database else None)
        env["BANKMESH_LISTEN"] = listen
        env["BANKMESH_READY_FILE"] = str(ready_file)
        env["BANKMESH_ENDPOINTS"] = str(endpoints_file or self.endpoints_file)
        env["BANKMESH_TRACE_FILE"] = str(self.trace_dir / f"{name}.jsonl")
        if identity_dir is not None:
            env["BANKMESH_IDENTITY_DIR"] = str(identity_dir)
        if spec.uses_redis and redis_url:
            env["BANKMESH_REDIS_URL"] = redis_url
        log_path = self.log_file(name)

        with self._open_log(name, f"starting {spec.module} on {listen}") as log:
            offset = log.tell()
            proc = subprocess.Popen(
                [self.python, "-m", spec.module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: the terminal's Ctrl-C goes to the
                # supervisor alone, which then stops services in order.
                process_group=0,
            )
        self._starting[name] = proc
        try:
            ready = self._wait_ready(spec, name, proc, ready_file, log_path, offset)
        except BaseException:
            _stop_processes([proc], grace_period=min(self.grace_period, 3.0))
            raise
        finally:
            del self._starting[name]
        service = RunningService(
            spec=spec,
            process=proc,
            address=ready.address,
            log_file=log_path,
            replica=replica,
            url=ready.url,
            identity_dir=identity_dir,
        )
        self._services[name] = service
        return service

    def kill(self, process_name: str) -> RunningService:
        """SIGKILL a ready process (its whole group) and forget it, as a crash would.

        For fault injection: ``start`` can run it again afterwards, on the same
        address if asked to. Raises KeyError for a process that is not running.
        """
        service = self._services.pop(process_name)
        _kill_group(service.process)
        (self.run_dir / f"{process_name}.ready.json").unlink(missing_ok=True)
        return service

    def exited(self) -> RunningService | None:
        """The first running process that has exited, if any."""
        for service in self._services.values():
            if service.process.poll() is not None:
                return service
        return None

    def failure(self, service: RunningService) -> ServiceFailed:
        """Describe an unexpected exit of ``service``, with its log tail."""
        code = service.process.poll()
        how = _describe_exit(code)
        return ServiceFailed(
            f"{service.describe()} {how} while the mesh was running",
            service=service.name,
            log_tail=_tail(service.log_file),
            log_file=str(service.log_file),
            hint=f"the full log is {service.log_file}; fix the cause and run `bankmesh up` again",
        )

    def stop_all(self, hurry: Callable[[], bool] = lambda: False) -> list[str]:
        """Stop every process: SIGTERM, then SIGKILL after the grace period.

        Processes stop in reverse start order. ``hurry`` returning True (a
        second Ctrl-C, say) skips the rest of the grace period. Returns the
        names of processes that had to be killed.
        """
        procs = [s.process for s in reversed(self._services.values())]
        procs += list(self._starting.values())
        names = {proc.pid: name for name, proc in self._all_processes()}
        killed = _stop_processes(procs, grace_period=self.grace_period, hurry=hurry)
        for name in names.values():
            (self.run_dir / f"{name}.ready.json").unlink(missing_ok=True)
        self._services.clear()
        self.remove_endpoints()
        return [names[proc.pid] for proc in killed]

    def write_endpoints(
        self,
        database: str | None,
        credentials: Mapping[str, str] | None = None,
        *,
        redis: str | None = None,
        complete: bool = True,
    ) -> Path:
        """Write ``endpoints.json`` for the processes ready so far, atomically.

        ``database`` and ``redis`` must already be stripped of secrets: the
        file is for any local client to read. ``credentials`` is how a local
        client (the operator CLI) reaches the services over mTLS: paths of its
        ``ca``, ``cert`` and ``key``, and the ``server_name_suffix`` each
        service's certificate is issued under; empty while the services serve
        plaintext. Paths only: the key stays in its 0600 file. ``urls`` holds
        the public URLs ready files gave (the edge's). ``complete`` is False
        while more services are still to start.
        """
        document = {
            "services": self.addresses(),
            "urls": self.urls(),
            "database": database,
            "redis": redis,
            "credentials": dict(credentials or {}),
            "complete": complete,
        }
        _write_atomically(self.endpoints_file, json.dumps(document, indent=2) + "\n")
        return self.endpoints_file

    def remove_endpoints(self) -> None:
        self.endpoints_file.unlink(missing_ok=True)

    def _all_processes(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        running = [(s.name, s.process) for s in self._services.values()]
        return running + list(self._starting.items())

    def _environment(self, spec: ServiceSpec, database_url: str | None) -> dict[str, str]:
        # Unbuffered, so the log tail shown on a crash holds the last words.
        inherited = dict(os.environ)
        # One from the operator's shell would give every service the same
        # identity; start() passes each service its own.
        inherited.pop("BANKMESH_IDENTITY_DIR", None)
        env = {**inherited, "PYTHONUNBUFFERED": "1", **spec.env}
        # Like the identity: what a service talks to is the launcher's
        # choice, never a leftover of the operator's shell.
        env.pop("BANKMESH_DATABASE_URL", None)
        env.pop("BANKMESH_REDIS_URL", None)
        if database_url is not None:
            env["BANKMESH_DATABASE_URL"] = database_url
        for variable in spec.data_dirs:
            env[variable] = str(self.data_dir_of(spec, variable))
        return env

    def _open_log(self, name: str, what: str) -> IO[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_file(name)
        if name not in self._fresh_logs:
            # One log per run keeps tails unambiguous; one previous run is
            # kept because it may hold the crash being investigated.
            if path.exists():
                path.replace(path.with_name(path.name + ".1"))
            self._fresh_logs.add(name)
        log = path.open("ab")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- bankmesh {stamp}: {what} ---\n".encode())
        log.flush()
        return log

    def _wait_ready(
        self,
        spec: ServiceSpec,
        name: str,
        proc: subprocess.Popen[bytes],
        ready_file: Path,
        log_path: Path,
        offset: int,
    ) -> _Ready:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            ready = _read_ready_file(ready_file)
            if ready is not None:
                return ready
            code = proc.poll()
            if code is not None:
                tail = _tail(log_path, offset)
                raise ServiceFailed(
                    f"{_process_label(spec, name)} {_describe_exit(code)} before it was ready",
                    service=spec.name,
                    log_tail=tail,
                    log_file=str(log_path),
                    hint=_failure_hint(spec.module, tail, log_path),
                )
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{_process_label(spec, name)} (pid {proc.pid}) did not report ready within "
                    f"{self.ready_timeout:.0f}s (no address in {ready_file})",
                    service=spec.name,
                    log_tail=_tail(log_path, offset),
                    log_file=str(log_path),
                    hint=(
                        f"a service must write its ready file once it serves; "
                        f"see {log_path} for where it got stuck"
                    ),
                )
            time.sleep(_POLL_INTERVAL)


def listen_address(host: str, port: int = 0) -> str:
    """``host:port`` as gRPC expects it, bracketing IPv6 literals."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _process_label(spec: ServiceSpec, name: str) -> str:
    return f"service {spec.name!r}" if name == spec.name else f"service {spec.name!r} ({name})"


@dataclass(frozen=True)
class _Ready:
    address: str
    url: str | None = None


def _read_ready_file(path: Path) -> _Ready | None:
    try:
        document = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        # Not written yet, or written in place by a service that ignores the
        # atomic-rename rule; either way, look again shortly.
        return None
    if not isinstance(document, dict):
        return None
    address, url = document.get("address"), document.get("url")
    if not isinstance(address, str) or not address:
        return None
    return _Ready(address, url if isinstance(url, str) and url else None)


def _failure_hint(module: str, tail: str, log_path: Path) -> str:
    if any(marker in tail.lower() for marker in _BIND_FAILURES):
        return (
            "the service could not listen: the port is taken or the host is not an "
            "address of this machine; free the port or pass another --listen-host"
        )
    if "No module named" in tail:
        return f"is {module} part of this checkout and importable? `make venv` installs the project"
    return f"the full log is {log_path}"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _tail(path: Path, offset: int = 0, lines: int = _TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _write_atomically(path: Path, text: str) -> None:
    # Readers (status, tests, clients) must never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # The whole group: a service's own helper processes stop with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _stop_processes(
    procs: list[subprocess.Popen[bytes]],
    *,
    grace_period: float,
    hurry: Callable[[], bool] = lambda: False,
) -> list[subprocess.Popen[bytes]]:
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    while time.monotonic() < deadline and not hurry():
        if all(proc.poll() is not None for proc in procs):
            return []
        time.sleep(_POLL_INTERVAL)
    killed = [proc for proc in procs if proc.poll() is None]
    for proc in killed:
        _kill_group(proc)
    return killed
