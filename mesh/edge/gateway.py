"""One REST request, from HTTP to a gRPC call and back.

`Gateway.handle` runs the steps in this order, each able to answer at once:

1. route: the path and method against the annotated routes (404, 405 + Allow);
2. token: per the route's `Auth` (401 + WWW-Authenticate; 503 when a
   state-changing call cannot check revocation);
3. rate limit: login and refresh by client IP, payment creation by user
   (429 + Retry-After);
4. body: at most `max_body_bytes`, by Content-Length and as read (413);
5. binding: path, query and JSON body into the request message (400 naming
   the field), then `Idempotency-Key` into `idempotency_key`, and the client's
   address and user agent into `client_context` where the request has one;
6. deadline: `X-Request-Timeout` seconds (capped), or the default;
7. the call, inside a SERVER span continuing the client's `traceparent`,
   with `mesh.context.request_id` and `end_user` set for the outbound
   interceptors; its Status (or the response) goes back as JSON.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response

from mesh import context
from mesh.edge.auth import Authenticator, VerifiedToken
from mesh.edge.errors import EdgeError, ErrorReply, invalid_argument, reply_for
from mesh.edge.ratelimit import RateLimiter, Rule
from mesh.edge.routes import Match, Route, RouteTable
from mesh.edge.settings import Auth, EdgeSettings
from mesh.edge.transcode import BindingError, build_request, render_response
from mesh.edge.upstream import CLIENT_IP_HEADER, Upstream, UpstreamError
from mesh.interceptors.deadline import deadline_at

log = logging.getLogger("bankmesh.edge")

TIMEOUT_HEADER = "x-request-timeout"
IDEMPOTENCY_HEADER = "idempotency-key"
CLIENT_CONTEXT = "bankmesh.common.v1.ClientContext"
MAX_QUERY_PARAMETERS = 64
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


def error_response(reply: ErrorReply) -> Response:
    return json_response(reply.http_status, reply.body, reply.headers)


class Gateway:
    def __init__(
        self,
        table: RouteTable,
        upstream: Upstream,
        authenticator: Authenticator,
        limiter: RateLimiter,
        settings: EdgeSettings,
    ) -> None:
        self._table = table
        self._upstream = upstream
        self._auth = authenticator
        self._limiter = limiter
        self._settings = settings
        self._tracer = trace.get_tracer("bankmesh.edge")

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except EdgeError as refusal:
            return error_response(refusal.reply())
        except UpstreamError as failure:
            return error_response(reply_for(failure.status))
        except Exception:
            incident = uuid.uuid4().hex
            log.exception("unexpected error, incident %s", incident)
            internal = EdgeError(
                grpc.StatusCode.INTERNAL,
                "INTERNAL",
                f"internal error; incident {incident}",
                {"incident": incident},
            )
            return error_response(internal.reply())

    async def _handle(self, request: Request) -> Response:
        found = self._table.match(request.method, _raw_path(request))
        if not isinstance(found, Match):
            if found.allowed:
                raise EdgeError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not allowed here; use {', '.join(found.allowed)}",
                    http_status=405,
                    headers={"Allow": ", ".join(found.allowed)},
                )
            raise EdgeError(
                grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND", f"no route {request.url.path}"
            )
        route = found.route
        verified = await self._authenticate(route, request)
        await self._rate_limit(route, request, verified)
        body = await _read_body(request, self._settings.max_body_bytes)
        message = self._bind(route, found, request, body)
        timeout = self._timeout(request)
        response = await self._call(route, message, request, verified, timeout)
        return json_response(200, render_response(route, response))

    async def _authenticate(self, route: Route, request: Request) -> VerifiedToken | None:
        mode = self._settings.auth_for(route.grpc_path)
        header = request.headers.get("authorization")
        if mode is Auth.NONE or (mode is Auth.OPTIONAL and not header):
            return None
        return await self._auth.authenticate(header, mutating=request.method in MUTATING)

    async def _rate_limit(
        self, route: Route, request: Request, verified: VerifiedToken | None
    ) -> None:
        rule: Rule | None = self._settings.rate_rules.get(route.grpc_path)
        if rule is None:
            return
        if rule.by == "user":
            subject = verified.user.user_id if verified else _client_ip(request)
        else:
            subject = _client_ip(request)
        decision = await self._limiter.hit(rule.name, subject, rule.limit)
        if not decision.allowed:
            raise EdgeError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "RATE_LIMITED",
                f"too many {rule.name} requests; retry in {decision.retry_after} s",
                {"retry_after_seconds": str(decision.retry_after), "limit": rule.name},
                headers={"Retry-After": str(decision.retry_after)},
            )

    def _bind(self, route: Route, found: Match, request: Request, body: bytes) -> Message:
        raw_query = request.scope.get("query_string", b"")
        try:
            query = parse_qsl(
                raw_query.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=MAX_QUERY_PARAMETERS,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise invalid_argument("", f"unreadable query string: {exc}") from None
        content_type = request.headers.get("content-type", "")
        if body.strip() and content_type and not _is_json(content_type):
            raise invalid_argument("", "send the body as application/json")
        try:
            message = build_request(route, found.path_values, query, body)
        except BindingError as exc:
            raise invalid_argument(exc.field, exc.message) from None
        self._apply_headers(route, message, request)
        return message

    def _apply_headers(self, route: Route, message: Message, request: Request) -> None:
        descriptor: Descriptor = route.input
        key_field = descriptor.fields_by_name.get("idempotency_key")
        header_key = request.headers.get(IDEMPOTENCY_HEADER)
        if key_field is not None and header_key is not None and route.body:
            in_body = getattr(message, "idempotency_key")  # noqa: B009 - a proto field by name
            if in_body and in_body != header_key:
                raise invalid_argument(
                    "idempotency_key", "the Idempotency-Key header and the body disagree"
                )
            message.idempotency_key = header_key  # type: ignore[attr-defined]
        client_field = descriptor.fields_by_name.get("client_context")
        nested = client_field.message_type if client_field is not None else None
        if nested is not None and nested.full_name == CLIENT_CONTEXT:
            client = message.client_context  # type: ignore[attr-defined]
            # As the edge sees them: a client does not get to choose these.
            client.ip_address = _client_ip(request)
            client.user_agent = request.headers.get("user-agent", "")[:256]

    def _timeout(self, request: Request) -> float:
        text = request.headers.get(TIMEOUT_HEADER)
        if text is None:
            return self._settings.default_timeout
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise invalid_argument(
                "X-Request-Timeout", "give the seconds the client will wait, e.g. 2.5"
            )
        return min(seconds, self._settings.max_timeout)

    async def _call(
        self,
        route: Route,
        message: Message,
        request: Request,
        verified: VerifiedToken | None,
        deadline_seconds: float,
    ) -> Message:
        carrier = {k: v for k, v in request.headers.items() if k in ("traceparent", "tracestate")}
        parent = propagate.extract(carrier)
        tokens = (
            context.end_user.set(verified.user if verified else None),
            deadline_at.set(time.monotonic() + deadline_seconds),
        )
        try:
            with self._tracer.start_as_current_span(
                f"{route.http_method} {route.template.text}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": route.http_method,
                    "http.route": route.template.text,
                    "rpc.method": route.grpc_path,
                },
            ):
                return await self._upstream(
                    route,
                    message,
                    deadline_seconds=deadline_seconds,
                    metadata=[(CLIENT_IP_HEADER, _client_ip(request))],
                )
        finally:
            context.end_user.reset(tokens[0])
            deadline_at.reset(tokens[1])


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").split("?", 1)[0]
    return quote(request.url.path)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def payload_too_large(limit: int) -> EdgeError:
    return EdgeError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAYLOAD_TOO_LARGE",
        f"the request body is larger than {limit} bytes",
        {"limit_bytes": str(limit)},
        http_status=413,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid_argument("Content-Length", "not a number")
        if int(declared) > limit:
            raise payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
