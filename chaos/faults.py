"""The faults a chaos run injects, and the scheduler that injects them in turn.

| kind               | what happens                                                          | ends when                         |
|--------------------|-----------------------------------------------------------------------|-----------------------------------|
| `kill-<service>`   | SIGKILL to the service's process group (account, payment, risk, identity, edge) | it is started again on its port and reports ready |
| `postgres-restart` | PostgreSQL stopped, alternately `immediate` (a crash: WAL replay at start) and `fast` | it is started again |
| `redis-stop`       | SIGKILL to redis-server                                                | it is started again (append-only file) |
| `net-drop`         | one hop's proxy resets every connection and refuses new ones (`close`), or swallows all bytes (`blackhole`), alternately | the proxy passes traffic again |
| `net-delay`        | one hop's proxy holds every chunk `delay` seconds                      | the proxy passes traffic again |
| `cert-rotate`      | every identity (services, operator) re-issued from the CA mid-run      | at once: nothing should notice    |
| `cert-expire`      | one service gets a certificate that lapses a second later; its connections are reset so every peer must handshake with it | it is re-issued a valid certificate |

A fault's window is from the moment it is injected to the moment the cause is
removed (the service is ready again, the proxy passes, the certificate is
valid); how long the mesh then needs to serve as before is the recovery time,
measured by the report from the throughput the clients saw.

The blocking steps (a restart waits for the service's ready file, PostgreSQL
for its socket) run in a worker thread, so the clients on the event loop keep
going and keep recording what the fault does to them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from chaos.cluster import ChaosMesh
from chaos.history import History
from chaos.proxy import Mode

SERVICES = ("account", "payment", "risk", "identity", "edge")
KINDS = (
    *(f"kill-{name}" for name in SERVICES),
    "postgres-restart",
    "redis-stop",
    "net-drop",
    "net-delay",
    "cert-rotate",
    "cert-expire",
)
# Hops faulted in turn by net-drop and net-delay: the service-to-service ones.
HOPS = (("payment", "account"), ("edge", "payment"), ("payment", "risk"), ("edge", "account"))
EXPIRE_TARGETS = ("risk", "account", "payment", "identity", "edge")
NET_DELAY = 0.4
CERT_LAPSE = timedelta(seconds=1)


@dataclass(frozen=True)
class Fault:
    kind: str
    duration: float  # seconds the cause lasts (a rotation lasts no time)


@dataclass
class Injected:
    kind: str
    target: str
    detail: str
    started: float
    ended: float


class Scheduler:
    """Injects ``faults`` one after another, ``gap`` seconds apart, and records each."""

    def __init__(self, mesh: ChaosMesh, history: History, faults: list[Fault], gap: float) -> None:
        self.mesh = mesh
        self.history = history
        self.faults = faults
        self.gap = gap
        self.injected: list[Injected] = []
        self._hops: Iterator[tuple[str, str]] = itertools.cycle(HOPS)
        self._delay_hops: Iterator[tuple[str, str]] = itertools.cycle(HOPS)
        self._drop_modes: Iterator[Mode] = itertools.cycle((Mode.CLOSE, Mode.BLACKHOLE))
        self._expire_targets: Iterator[str] = itertools.cycle(EXPIRE_TARGETS)
        self._immediate: Iterator[bool] = itertools.cycle((True, False))

    async def run(self, stop: asyncio.Event) -> None:
        for fault in self.faults:
            if stop.is_set():
                return
            await self.inject(fault)
            await asyncio.sleep(self.gap)

    async def inject(self, fault: Fault) -> Injected:
        begin, end, target, detail = self._plan(fault)
        started = self.history.now()
        try:
            await asyncio.to_thread(begin)
            await asyncio.sleep(fault.duration)
        finally:
            await asyncio.to_thread(end)
        record = Injected(fault.kind, target, detail, started, self.history.now())
        self.injected.append(record)
        return record

    def _plan(self, fault: Fault) -> tuple[Callable[[], None], Callable[[], None], str, str]:
        mesh = self.mesh
        kind = fault.kind
        if kind.startswith("kill-"):
            name = kind.removeprefix("kill-")
            return (
                lambda: mesh.kill(name),
                lambda: _discard(mesh.start_service(name)),
                name,
                "SIGKILL, then started again on its port",
            )
        if kind == "postgres-restart":
            immediate = next(self._immediate)
            how = "immediate" if immediate else "fast"
            return (
                lambda: mesh.postgres.stop(immediate=immediate),
                mesh.postgres.start,
                "postgres",
                f"{how} shutdown, then started again",
            )
        if kind == "redis-stop":
            return mesh.redis.kill, mesh.redis.start, "redis", "SIGKILL, then started again"
        if kind == "net-drop":
            caller, callee = next(self._hops)
            mode = next(self._drop_modes)
            proxies = [mesh.hops[(caller, callee)]]
            return (
                lambda: mesh.set_mode(proxies, mode),
                lambda: mesh.set_mode(proxies, Mode.PASS),
                f"{caller}->{callee}",
                f"proxy {mode.value}",
            )
        if kind == "net-delay":
            caller, callee = next(self._delay_hops)
            proxies = [mesh.hops[(caller, callee)]]
            return (
                lambda: mesh.set_mode(proxies, Mode.DELAY, NET_DELAY),
                lambda: mesh.set_mode(proxies, Mode.PASS),
                f"{caller}->{callee}",
                f"every chunk held {NET_DELAY:.1f} s",
            )
        if kind == "cert-rotate":
            return (
                mesh.rotate_certificates,
                lambda: None,
                "all",
                "every service's and the operator's certificate re-issued",
            )
        if kind == "cert-expire":
            name = next(self._expire_targets)

            def lapse() -> None:
                mesh.expire_certificate(name, CERT_LAPSE)
                # Open connections outlive a certificate (TLS checks it at the
                # handshake): once it has lapsed, make every peer handshake anew.
                time.sleep(CERT_LAPSE.total_seconds() + 0.5)
                mesh.reset_connections_to(name)

            def renew() -> None:
                mesh.renew_certificate(name)

            return (
                lapse,
                renew,
                name,
                f"certificate lapsed after {CERT_LAPSE.total_seconds():.0f} s, connections reset",
            )
        raise ValueError(f"unknown fault kind {kind!r}")


def _discard(_: object) -> None:
    pass
