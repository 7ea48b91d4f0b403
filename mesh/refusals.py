"""Calls the mesh refused before any service code ran, for whoever keeps a record.

The authentication and authorization interceptors refuse calls on the
service's behalf (UNAUTHENTICATED, PERMISSION_DENIED). Each refusal is logged
as a security event and, when the server was given a `RefusalSink`
(`ServerSecurity.refusals`), handed to it: the services give their audit log
(services.common.audit), which keeps it hash-chained beside their own events.

A sink only queues: it must never block or raise, so a refusal is never
slowed down or turned into another error by whoever records it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

security_log = logging.getLogger("bankmesh.security")


@dataclass(frozen=True, slots=True)
class Refusal:
    method: str  # "/package.Service/Method"
    code: str  # the gRPC status: UNAUTHENTICATED or PERMISSION_DENIED
    reason: str  # why, as the caller was told
    at: datetime  # UTC


class RefusalSink(Protocol):
    def submit(self, refusal: Refusal) -> None:
        """Take the refusal (the caller and request are in mesh.context); never block or raise."""
        ...


def record(sink: RefusalSink | None, refusal: Refusal) -> None:
    """Hand `refusal` to `sink`; the refusal goes out whatever the sink does."""
    if sink is None:
        return
    try:
        sink.submit(refusal)
    except Exception:
        security_log.exception("could not record the refusal of %s", refusal.method)
