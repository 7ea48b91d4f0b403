"""OpenTelemetry server spans, continuing the caller's W3C trace context.

Each RPC becomes a SERVER span named after its method, child of the caller's
span when a `traceparent` header came with it; the outbound interceptor
injects the current context into downstream calls, so one payment is one trace
across payment, risk and account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .base import Call, ServerInterceptor

TRACEPARENT = "traceparent"  # W3C trace context, the propagator the mesh uses


class TracingInterceptor(ServerInterceptor):
    def __init__(self, service: str, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._service = service
        self._tracer = trace.get_tracer("bankmesh.mesh", tracer_provider=tracer_provider)

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        # A call that starts a trace (from a client, the CLI, a load test)
        # carries no trace context: it skips copying and parsing the metadata.
        parent = None
        if call.metadata(TRACEPARENT) is not None:
            carrier = {
                k: v for k, v in call.context.invocation_metadata() or () if isinstance(v, str)
            }
            parent = propagate.extract(carrier)
        with self._tracer.start_as_current_span(
            call.method.lstrip("/"),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": call.service,
                "rpc.method": call.method_name,
                "bankmesh.service": self._service,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await proceed()
            except grpc.aio.AbortError:
                code = call.context.code()
                span.set_attribute("rpc.grpc.status_code", _code_number(code))
                span.set_status(Status(StatusCode.ERROR, str(code)))
                raise
            span.set_attribute("rpc.grpc.status_code", 0)
            return result


def _code_number(code: object) -> int:
    value = getattr(code, "value", None)
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return value[0]
    return 2  # UNKNOWN
