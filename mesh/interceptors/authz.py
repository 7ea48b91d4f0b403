"""Authorization: the mesh policy decides whether the caller may reach the method.

Runs after authentication, for every RPC of every shape, and refuses with
PERMISSION_DENIED when the policy says no (including methods it does not
list: default deny). Denials are logged as security events and handed to the
server's refusal sink, if it has one (mesh.refusals).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import grpc

from mesh import context
from mesh.errors import WireError
from mesh.policy import Policy
from mesh.refusals import Refusal, RefusalSink, record

from .base import Call, ServerInterceptor, abort

security_log = logging.getLogger("bankmesh.security")


class AuthorizationInterceptor(ServerInterceptor):
    def __init__(self, policy: Policy, refusals: RefusalSink | None = None) -> None:
        self._policy = policy
        self._refusals = refusals

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
        record(
            self._refusals,
            Refusal(call.method, "PERMISSION_DENIED", decision.reason, datetime.now(UTC)),
        )
        await abort(
            call, WireError(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", decision.reason)
        )
