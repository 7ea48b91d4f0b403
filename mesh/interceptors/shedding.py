"""Load shedding by priority: when a server is saturated, drop the least important work first.

Each process admits at most `limit` calls in flight. Calls are classed:

* CRITICAL: moving money and signing in (CreatePayment, CreateTransfer(s),
  ScoreTransaction, Login, RefreshToken) and health checks: admitted up to
  the full limit;
* NORMAL: everything else: admitted while fewer than 80% of the slots are taken;
* LOW: statements and listings (List*), the analytics-style reads a person
  can repeat in a second: admitted while fewer than 50% are taken.

A refused call gets RESOURCE_EXHAUSTED / OVERLOADED at once with a
`retry-after` trailer (seconds), instead of queueing until every caller times
out; the edge turns it into HTTP 429 with Retry-After.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mesh.errors import WireError

from .base import Call, ServerInterceptor, abort

DEFAULT_LIMIT = 256
RETRY_AFTER_SECONDS = 1


class Priority(enum.IntEnum):
    LOW = 0
    NORMAL = 1
    CRITICAL = 2


_SHARE = {Priority.LOW: 0.5, Priority.NORMAL: 0.8, Priority.CRITICAL: 1.0}
_CRITICAL_METHODS = frozenset(
    {
        "CreatePayment",
        "CreateTransfer",
        "CreateTransfers",
        "ScoreTransaction",
        "Login",
        "RefreshToken",
        "Check",
        "Watch",
    }
)


def priority_of(method: str) -> Priority:
    name = method.rsplit("/", 1)[-1]
    if name in _CRITICAL_METHODS:
        return Priority.CRITICAL
    if name.startswith("List"):
        return Priority.LOW
    return Priority.NORMAL


def limit_from_env() -> int:
    return int(os.environ.get("BANKMESH_MAX_IN_FLIGHT", DEFAULT_LIMIT))


class LoadSheddingInterceptor(ServerInterceptor):
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self._limit = limit
        self.in_flight = 0

    def admits(self, priority: Priority) -> bool:
        return self.in_flight < self._limit * _SHARE[priority]

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        priority = priority_of(call.method)
        if not self.admits(priority):
            await abort(
                call,
                WireError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "OVERLOADED",
                    f"the service is saturated and sheds {priority.name.lower()}-priority "
                    f"calls; retry in {RETRY_AFTER_SECONDS} s",
                    {"retry_after_seconds": str(RETRY_AFTER_SECONDS)},
                ),
                trailers=(("retry-after", str(RETRY_AFTER_SECONDS)),),
            )
        self.in_flight += 1
        try:
            return await proceed()
        finally:
            self.in_flight -= 1
