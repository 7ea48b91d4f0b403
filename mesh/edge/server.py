"""HTTPS for the public port: uvicorn with an SSLContext that speaks TLS 1.3 only.

uvicorn builds its own SSLContext from file names in `Config.load()` and has
no setting for a minimum version (0.47 added `ssl_context_factory`; we support
older releases too), so `TlsConfig` lets `load()` do everything else and then
puts our context in place. `public_tls_context` makes that context: TLS 1.3
as the floor (a TLS 1.2 ClientHello fails the handshake), no compression,
renegotiation or session tickets, ALPN http/1.1.

The certificate: production serves one from a public CA
(BANKMESH_EDGE_TLS_CERT / BANKMESH_EDGE_TLS_KEY), since phones trust public
roots, not our mesh CA. Without them the edge serves its mesh certificate
(issued by mesh.pki with DNS SANs edge.bankmesh.local and localhost and IP
127.0.0.1), which is what development and tests use, trusting the mesh's
ca.pem. `CertificateReloader` loads a re-issued certificate into the same
context, so new connections get it without a restart.

`serving(app, ...)` runs uvicorn on an already bound socket (port 0 works),
yields the port once it accepts connections, and on exit stops it gracefully:
in-flight requests finish (up to `grace` seconds) before the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger("bankmesh.edge.server")

GRACE_SECONDS = 5.0


def public_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    return context


class CertificateReloader:
    """Loads the certificate again into `context` when its files change."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self._context, self._cert, self._key = context, cert, key
        self._stamp = self._read_stamp()

    def _read_stamp(self) -> tuple[int, ...]:
        return tuple(p.stat().st_mtime_ns for p in (self._cert, self._key))

    def check(self) -> bool:
        """Reload if the files changed; True when a new certificate is in use."""
        try:
            stamp = self._read_stamp()
            if stamp == self._stamp:
                return False
            self._context.load_cert_chain(self._cert, self._key)
        except (OSError, ssl.SSLError) as exc:
            # Mid-rotation (a new cert beside the old key) or broken: keep serving.
            log.warning("keeping the current TLS certificate: %s", exc)
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded from %s", self._cert)
        return True

    async def run(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()


class TlsConfig(uvicorn.Config):
    """uvicorn's Config with our SSLContext instead of the one it would build."""

    def __init__(self, app: Any, *, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._ssl_context = ssl_context

    def load(self) -> None:
        super().load()
        self.ssl = self._ssl_context


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process's signals belong to whoever runs us (mesh.edge.app.serve);
        # uvicorn would re-raise them after shutting down, before our clean-up.
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    ssl_context: ssl.SSLContext,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float = GRACE_SECONDS,
) -> AsyncIterator[int]:
    sock = bind(host, port)
    bound_port = int(sock.getsockname()[1])
    config = TlsConfig(
        app,
        ssl_context=ssl_context,
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the client address is the peer's, unless a proxy is configured
        server_header=False,
        timeout_graceful_shutdown=int(grace),
        h11_max_incomplete_event_size=16 * 1024,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the edge server stopped while starting")
            await asyncio.sleep(0.01)
        yield bound_port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
