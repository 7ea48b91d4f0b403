"""A fault-injecting TCP proxy on loopback, one per hop between two processes.

Each hop of the mesh (payment -> account, edge -> identity, the harness's own
clients -> payment, ...) goes through a ``Proxy`` listening on 127.0.0.1: the
caller's endpoints.json names the proxy, the proxy forwards to the callee's
real port. TLS runs end to end through it (clients check the callee's name,
``<service>.bankmesh.local``, not its address), so in ``pass`` mode the proxy
is invisible.

Modes:

* ``pass``: bytes are copied both ways.
* ``close``: every open connection is reset and new ones are accepted and
  closed at once: a crashed peer, a firewall sending RSTs.
* ``blackhole``: connections stay open but bytes vanish, both ways; new ones
  are accepted and never answered: a partition, where callers learn of it
  only from their deadlines. When the mode changes back, the connections
  that lost bytes are reset (an HTTP/2 stream missing bytes is garbage).
* ``delay``: each chunk waits ``delay`` seconds before it is forwarded, in
  order: a slow network.

The proxies of a run share one event loop in a thread of their own
(``ProxyHub``), so they keep forwarding while the harness's own loop is busy
with its clients; the hub's methods are called from any other thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

_CHUNK = 65536
_CONNECT_TIMEOUT = 2.0
_T = TypeVar("_T")


class Mode(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a proxy mode, not a password
    CLOSE = "close"
    BLACKHOLE = "blackhole"
    DELAY = "delay"


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    damaged: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


@dataclass(eq=False)
class Proxy:
    """Forwards 127.0.0.1:<port> to ``upstream`` (a loopback port), in one of the modes."""

    name: str  # "payment->account"
    caller: str
    callee: str
    upstream_port: int
    mode: Mode = Mode.PASS
    delay: float = 0.0
    port: int = 0
    connections: set[_Connection] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        previous, self.mode, self.delay = self.mode, mode, delay
        if mode is Mode.CLOSE:
            self.reset()
        if previous is Mode.BLACKHOLE and mode is not Mode.BLACKHOLE:
            for connection in [c for c in self.connections if c.damaged]:
                connection.abort()
                self.connections.discard(connection)

    def swallowing(self) -> bool:
        return self.mode is Mode.BLACKHOLE

    def reset(self) -> None:
        """Reset every open connection: callers must connect (and handshake) anew."""
        for connection in list(self.connections):
            connection.abort()
        self.connections.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is Mode.CLOSE:
            writer.transport.abort()
            return
        connection = _Connection(writer)
        self.connections.add(connection)
        try:
            if self.mode is Mode.BLACKHOLE:
                # Accepted, never answered: the caller's handshake hangs.
                connection.damaged = True
                while await reader.read(_CHUNK):
                    if not self.swallowing():
                        break
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.upstream_port), _CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                return  # the callee is down: the caller sees its connection reset
            connection.upstream = up_writer
            await asyncio.gather(
                self._pipe(reader, up_writer, connection),
                self._pipe(up_reader, writer, connection),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            connection.abort()
            self.connections.discard(connection)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                if self.mode is Mode.BLACKHOLE:
                    connection.damaged = True
                    continue
                if self.mode is Mode.DELAY and self.delay > 0:
                    await asyncio.sleep(self.delay)
                sink.write(data)
                await sink.drain()
        finally:
            # Either side ending ends the connection: no half-open hops.
            connection.abort()


class ProxyHub:
    """Every proxy of a run, on an event loop in a daemon thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-proxies", daemon=True
        )
        self._thread.start()
        self.proxies: dict[str, Proxy] = {}

    def add(self, caller: str, callee: str, upstream_port: int) -> Proxy:
        proxy = Proxy(f"{caller}->{callee}", caller, callee, upstream_port)
        self._run(proxy.start)
        self.proxies[proxy.name] = proxy
        return proxy

    def into(self, callee: str) -> list[Proxy]:
        return [p for p in self.proxies.values() if p.callee == callee]

    def set_mode(self, proxies: Iterable[Proxy], mode: Mode, delay: float = 0.0) -> None:
        chosen = list(proxies)

        async def apply() -> None:
            for proxy in chosen:
                proxy.set_mode(mode, delay)

        self._run(apply)

    def reset(self, proxies: Iterable[Proxy]) -> None:
        chosen = list(proxies)

        async def apply() -> None:
            for proxy in chosen:
                proxy.reset()

        self._run(apply)

    def close(self) -> None:
        async def stop_all() -> None:
            for proxy in self.proxies.values():
                await proxy.stop()

        with contextlib.suppress(RuntimeError):
            self._run(stop_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def _run(self, make: Callable[[], Awaitable[_T]]) -> _T:
        async def call() -> _T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)
