"""One JSON line per RPC: who called what, for whom, how it ended and how long it took.

Lines carry the request id and trace id so they join up with traces and with
the other services' lines. They never carry request or response bodies:
those hold account numbers, amounts and personal data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace

from mesh import context

from .base import Call, ServerInterceptor

log = logging.getLogger("bankmesh.access")


class AccessLogInterceptor(ServerInterceptor):
    def __init__(self, service: str) -> None:
        self._service = service

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await proceed()
        except grpc.aio.AbortError:
            code = _code_name(call.context.code())
            raise
        except BaseException:
            code = "UNKNOWN"
            raise
        finally:
            self._write(call, code, time.perf_counter() - started)

    def _write(self, call: Call, code: str, seconds: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        span = trace.get_current_span().get_span_context()
        user = context.end_user.get()
        log.info(
            json.dumps(
                {
                    "service": self._service,
                    "method": call.method,
                    "code": code,
                    "ms": round(seconds * 1000, 2),
                    "request_id": context.request_id.get(),
                    "trace_id": format(span.trace_id, "032x") if span.is_valid else "",
                    "caller": context.peer_service.get(),
                    "user": user.user_id if user else "",
                },
                separators=(",", ":"),
            )
        )


def _code_name(code: object) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
