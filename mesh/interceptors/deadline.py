"""Deadlines: every call has one, and outbound calls inherit what is left of it.

A call that arrives without a deadline gets `default_seconds`, so no request
can hold a database connection forever. The absolute deadline goes into a
ContextVar; the outbound interceptor gives each downstream call the time
remaining minus a safety margin, so a slow hop fails fast instead of
answering a caller that has already given up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc

from .base import Call, ServerInterceptor

DEFAULT_SECONDS = 10.0
# Monotonic time by which the current call must be answered.
deadline_at: ContextVar[float | None] = ContextVar("deadline_at", default=None)


def remaining() -> float | None:
    """Seconds left for the current call, None outside of one."""
    at = deadline_at.get()
    return None if at is None else at - time.monotonic()


class DeadlineInterceptor(ServerInterceptor):
    def __init__(self, default_seconds: float = DEFAULT_SECONDS) -> None:
        self._default = default_seconds

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        left: float | None = call.context.time_remaining()
        if left is None or left > self._default * 100:  # "no deadline" shows as huge
            left = self._default
        if left <= 0:
            await call.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already passed")
        token = deadline_at.set(time.monotonic() + left)
        try:
            return await proceed()
        finally:
            deadline_at.reset(token)
