"""Wiring of the edge gateway: HTTPS+JSON for mobile clients, gRPC over mTLS behind it.

`build_edge_app(...)` returns the ASGI app; nothing in it knows where its
parts come from, so tests hand it fakes (httpx's ASGITransport for routing)
or the real mesh (uvicorn over TLS on port 0). `serve(env)` is what
`python -m mesh.edge` runs under the launcher's contract (mesh.config):
BANKMESH_LISTEN, BANKMESH_READY_FILE (with the public `url` added),
BANKMESH_ENDPOINTS, BANKMESH_IDENTITY_DIR (mTLS to the services, and the
default HTTPS certificate), BANKMESH_REDIS_URL; the edge's own settings are
in mesh.edge.settings.

Besides the annotated routes the app serves:

* `GET /healthz`: 200 while the process runs;
* `GET /readyz`: 200 when every upstream answers grpc.health SERVING and the
  token keys are loaded; 503 (a Status whose ErrorInfo metadata names each
  check) otherwise;
* `GET /openapi.json`: the OpenAPI 3.1 document of the routes.

Every response carries `X-Request-Id` (the client's, if well-formed, else a
new one; the same id goes to the services) and `Cache-Control: no-store`.
CORS is off unless origins are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh import context
from mesh.config import ServiceEnvironment
from mesh.edge.auth import AccessTokenVerifier, Authenticator, KeyRing, grpc_jwks_source
from mesh.edge.auth import redis_session_check as redis_sessions
from mesh.edge.errors import EdgeError
from mesh.edge.gateway import Gateway, error_response, json_response
from mesh.edge.openapi import build_openapi
from mesh.edge.ratelimit import RateLimiter
from mesh.edge.routes import RouteTable, bankmesh_services, load_routes
from mesh.edge.server import CertificateReloader, public_tls_context, serving
from mesh.edge.settings import EdgeSettings
from mesh.edge.upstream import GrpcUpstream, Upstream, health_of

log = logging.getLogger("bankmesh.edge")

REQUEST_ID_HEADER = "x-request-id"
# The same rule as the services' request-id interceptor: anything else is replaced.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

HealthProbe = Callable[[str], Awaitable[str]]


class RequestIds:
    """Pure ASGI: picks the request id, puts it in mesh.context, echoes it, adds headers."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = context.request_id.set(request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"cache-control")
                ]
                headers += [
                    (b"x-request-id", request_id.encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"strict-transport-security", b"max-age=31536000"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, send_with_headers)
        finally:
            context.request_id.reset(token)


def build_edge_app(
    *,
    upstream: Upstream,
    authenticator: Authenticator,
    limiter: RateLimiter,
    settings: EdgeSettings | None = None,
    table: RouteTable | None = None,
    health: HealthProbe | None = None,
    keys: KeyRing | None = None,
) -> ASGIApp:
    """The edge as an ASGI app. `health(service)` answers /readyz; `keys` too, if given."""
    settings = settings or EdgeSettings()
    table = table or load_routes(bankmesh_services())
    gateway = Gateway(table, upstream, authenticator, limiter, settings)
    openapi = build_openapi(table, needs_token=lambda r: settings.auth_for(r.grpc_path).value)
    special: dict[str, Callable[[Request], Awaitable[Response]]] = {}

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        if health is not None:
            names = list(settings.upstreams)
            results = await asyncio.gather(*(health(name) for name in names))
            checks.update(zip(names, results, strict=True))
        down = {k: v for k, v in checks.items() if v != "SERVING"}
        if keys is not None:
            count = len(keys.jwks.keys)
            checks["jwks"] = f"{count} keys" if count else "EMPTY"
            if not count:
                down["jwks"] = "EMPTY"  # no token could be verified
        if down:
            refusal = EdgeError(
                grpc.StatusCode.UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
                "not ready: " + ", ".join(f"{k} {v}" for k, v in sorted(down.items())),
                checks,
            )
            return error_response(refusal.reply())
        return json_response(200, {"status": "ready", "checks": checks})

    async def openapi_json(request: Request) -> Response:
        return json_response(200, openapi)

    special.update({"/healthz": healthz, "/readyz": readyz, "/openapi.json": openapi_json})

    async def dispatch(request: Request) -> Response:
        own = special.get(request.url.path)
        if own is not None and request.method in ("GET", "HEAD"):
            return await own(request)
        return await gateway.handle(request)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Every path reaches `dispatch`: a router's own 404/405 would not be a Status.
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"the edge serves HTTP only, not {scope['type']}")
        response = await dispatch(Request(scope, receive))
        await response(scope, receive, send)

    outer: ASGIApp = app
    if settings.cors_origins:
        outer = CORSMiddleware(
            outer,
            allow_origins=list(settings.cors_origins),
            allow_methods=sorted({r.http_method for r in table.routes} | {"GET"}),
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-Id",
                "X-Request-Timeout",
                "traceparent",
                "tracestate",
            ],
            expose_headers=["X-Request-Id", "Retry-After", "WWW-Authenticate"],
            max_age=600,
        )
    return RequestIds(outer)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop inside the app: serve() owns the background work."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def write_ready_file(env: ServiceEnvironment, address: str, url: str) -> None:
    """{"service", "address", "pid", "url"}, written atomically like every service's."""
    if env.ready_file is None:
        return
    tmp = env.ready_file.with_suffix(".tmp")
    document = {"service": env.name, "address": address, "pid": os.getpid(), "url": url}
    tmp.write_text(json.dumps(document))
    tmp.replace(env.ready_file)


def _tls_files(env: ServiceEnvironment, settings: EdgeSettings) -> tuple[Path, Path]:
    if settings.tls_cert and settings.tls_key:
        return settings.tls_cert, settings.tls_key
    if env.identity_dir is None:
        raise SystemExit(
            "edge: no TLS certificate. Set BANKMESH_EDGE_TLS_CERT/_KEY (production: a public "
            "CA's certificate) or BANKMESH_IDENTITY_DIR (development: the mesh certificate)"
        )
    return env.identity_dir / "cert.pem", env.identity_dir / "key.pem"


async def serve(env: ServiceEnvironment, environ: Mapping[str, str] | None = None) -> None:
    """Run the edge until SIGTERM/SIGINT, then finish in-flight requests and clean up."""
    import redis.asyncio

    from mesh.client import MeshClient

    settings = EdgeSettings.from_env(os.environ if environ is None else environ)
    if not env.redis_url and not env.insecure_dev:
        raise SystemExit(
            "edge: set BANKMESH_REDIS_URL: rate limits and session revocation live in Redis"
        )
    client = MeshClient(env)
    redis_client = (
        redis.asyncio.Redis.from_url(
            env.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        if env.redis_url
        else None
    )
    if redis_client is None:
        log.warning("BANKMESH_INSECURE_DEV: no Redis, so no revocation check and local limits")
    keys = KeyRing(
        grpc_jwks_source(lambda: client.channel("identity")),
        refresh_interval=settings.jwks_refresh_seconds,
    )
    sessions = redis_sessions(redis_client) if redis_client is not None else _no_sessions
    app = build_edge_app(
        upstream=GrpcUpstream(client.channel),
        authenticator=Authenticator(
            keys, AccessTokenVerifier(issuer=settings.issuer, audience=settings.audience), sessions
        ),
        limiter=RateLimiter(redis_client),
        settings=settings,
        health=lambda name: _probe(client, name),
        keys=keys,
    )
    cert, key = _tls_files(env, settings)
    tls = public_tls_context(cert, key)
    host, _, port = env.listen.rpartition(":")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background = [
        asyncio.create_task(keys.run()),
        asyncio.create_task(CertificateReloader(tls, cert, key).run()),
    ]
    try:
        async with serving(app, tls, host=host or "127.0.0.1", port=int(port or 0)) as bound:
            shown = f"[{host}]" if ":" in host else host
            write_ready_file(env, f"{host}:{bound}", f"https://{shown}:{bound}")
            log.info("edge listening on https://%s:%d", shown, bound)
            await stop.wait()
            log.info("edge draining in-flight requests")
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()
        if redis_client is not None:
            await redis_client.aclose()


async def _no_sessions(session_id: str) -> bool:
    return False


async def _probe(client: Any, service: str) -> str:
    try:
        channel = client.channel(service)
    except LookupError:
        return "UNREACHABLE (not in endpoints.json)"
    return await health_of(channel)


def main() -> None:
    from mesh.telemetry import configure_tracing

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    configure_tracing("edge")
    asyncio.run(serve(ServiceEnvironment.from_env("edge")))
