"""Authorization: the mesh policy decides whether the caller may reach the method.

Runs after authentication, for every RPC of every shape, and refuses with
PERMISSION_DENIED when the policy says no (including methods it does not
list: default deny). Denials are logged as security events and, in a
service that keeps an audit log, handed to its audit sink (`rpc.denied`).

The sink only queues (services.common.audit.store.AuditWriter writes in the
background, in batches, and drops when full), so a refusal is never slowed
down or turned into another error by the audit log. A service process
installs its sink once with `record_denials_in`, because the server factory
builds this interceptor for it; a sink given to the constructor wins.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Protocol

import grpc

from mesh import context
from mesh.errors import WireError
from mesh.policy import Policy
from services.common.audit.events import AuditEvent, Outcome
from services.common.audit.origin import current_origin

from .base import Call, ServerInterceptor, abort

security_log = logging.getLogger("bankmesh.security")


class DenialSink(Protocol):
    def submit(self, event: AuditEvent) -> None:
        """Take the event; never block, never raise."""
        ...


_process_sink: DenialSink | None = None


def record_denials_in(sink: DenialSink | None) -> None:
    """Send this process's refusals to `sink` (its service's audit log); None stops it."""
    global _process_sink  # one audit log per service process
    _process_sink = sink


class AuthorizationInterceptor(ServerInterceptor):
    def __init__(self, policy: Policy, audit: DenialSink | None = None) -> None:
        self._policy = policy
        self._audit = audit

    async def admit(self, call: Call) -> None:
        caller = context.peer_service.get()
        user = context.end_user.get()
        decision = self._policy.decide(call.method, caller, user)
        if decision.allowed:
            return
        security_log.warning(
            json.dumps(
                {
                    "event": "access_denied",
                    "method": call.method,
                    "caller": caller,
                    "user": user.user_id if user else "",
                    "reason": decision.reason,
                    "request_id": context.request_id.get(),
                }
            )
        )
        sink = self._audit or _process_sink
        if sink is not None:
            try:
                sink.submit(
                    AuditEvent.by(
                        current_origin(),
                        "rpc.denied",
                        Outcome.DENIED,
                        datetime.now(UTC),
                        call.method,
                        {"reason": decision.reason, "caller": caller or "unknown"},
                    )
                )
            except Exception:  # the refusal goes out whatever the audit log does
                security_log.exception("could not queue the audit event of a refusal")
        await abort(
            call, WireError(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", decision.reason)
        )
