"""Client interceptors: what every outbound call carries, one concern each.

Installed by `mesh.client.MeshClient` on every channel, in this order:

1. `PropagateRequestId`: the current x-request-id.
2. `PropagateTraceContext`: W3C traceparent/tracestate of the current span.
3. `PropagateEndUser`: the current end user, re-signed with this service's key
   and addressed to the callee (see `mesh.assertions`).
4. `PropagateDeadline`: the caller's remaining time minus a margin, or a
   default when there is no incoming call (background work).
5. `CircuitBreaker`: fails fast while a downstream keeps failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from opentelemetry import propagate

from mesh import assertions, context

from .deadline import remaining
from .request_id import HEADER as REQUEST_ID_HEADER

if TYPE_CHECKING:
    _Base = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
else:
    _Base = grpc.aio.UnaryUnaryClientInterceptor

_Continuation: TypeAlias = Callable[[grpc.aio.ClientCallDetails, Any], Any]


def _with(
    details: grpc.aio.ClientCallDetails,
    *,
    metadata: list[tuple[str, str]] | None = None,
    timeout: float | None = None,
) -> grpc.aio.ClientCallDetails:
    existing = list(details.metadata or ())
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout if timeout is None else timeout,
        metadata=grpc.aio.Metadata(*existing, *(metadata or [])),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class PropagateRequestId(_Base):
    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        request_id = context.request_id.get()
        if request_id:
            details = _with(details, metadata=[(REQUEST_ID_HEADER, request_id)])
        return await continuation(details, request)


class PropagateTraceContext(_Base):
    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            details = _with(details, metadata=list(carrier.items()))
        return await continuation(details, request)


class PropagateEndUser(_Base):
    def __init__(self, signer: Callable[[], assertions.AssertionSigner], audience: str) -> None:
        self._signer = signer  # returns the current signer: keys rotate
        self._audience = audience

    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        user = context.end_user.get()
        if user is not None:
            token = self._signer().sign(user, self._audience)
            details = _with(details, metadata=[(assertions.HEADER, token)])
        return await continuation(details, request)


class PropagateDeadline(_Base):
    def __init__(self, default_seconds: float = 5.0, margin_seconds: float = 0.05) -> None:
        self._default = default_seconds
        self._margin = margin_seconds

    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        left = remaining()
        budget = self._default if left is None else max(left - self._margin, 0.001)
        if details.timeout is not None:
            budget = min(budget, details.timeout)
        return await continuation(_with(details, timeout=budget), request)


class CircuitOpen(grpc.aio.AioRpcError):
    """Raised instead of calling a downstream whose circuit is open."""


class CircuitBreaker(_Base):
    """Opens after `threshold` consecutive failures that point at the downstream
    (UNAVAILABLE, DEADLINE_EXCEEDED); while open, calls fail at once with
    UNAVAILABLE; after `cooldown` one trial call is let through (half-open) and
    its outcome closes or re-opens the circuit. Business errors do not count:
    a refused transfer means the service is healthy."""

    TRIPPING = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self._cooldown else "open"

    async def intercept_unary_unary(
        self, continuation: _Continuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise CircuitOpen(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                f"circuit to {self.name} is open after repeated failures; retry shortly",
                "circuit open",
            )
        self._trial_running = state == "half-open"
        try:
            call = await continuation(details, request)
            await call  # the response, or the AioRpcError it ends with
        except grpc.aio.AioRpcError as error:
            self._record(error.code())
            raise
        else:
            self._record(grpc.StatusCode.OK)
        finally:
            self._trial_running = False
        return call

    def _record(self, code: grpc.StatusCode) -> None:
        if code in self.TRIPPING:
            self._failures += 1
            if self._failures >= self._threshold or self._opened_at is not None:
                self._opened_at = self._clock()
        else:
            self._failures = 0
            self._opened_at = None
