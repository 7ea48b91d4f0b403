"""The identity service's errors on the wire: reason -> gRPC status code.

Business refusals are never INTERNAL. Sign-in and token refusals are
UNAUTHENTICATED (HTTP 401 at the edge); a locked sign-in is
RESOURCE_EXHAUSTED with ``retry_after_seconds`` in the ErrorInfo metadata
(HTTP 429 with Retry-After), because waiting is what helps. An id the caller
may not see, or that names nothing, is NOT_FOUND with INVALID_ID: the two are
indistinguishable on purpose.
"""

from __future__ import annotations

import grpc

from mesh.errors import WireError
from services.identity.domain.errors import AccountLocked, IdentityError, NotFound, Reason
from services.identity.service_layer.ports import DependencyUnavailable
from services.identity.service_layer.unit_of_work import StorageUnavailable, WriteConflict

_CODES: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_CREDENTIALS: grpc.StatusCode.UNAUTHENTICATED,
    Reason.TOKEN_INVALID: grpc.StatusCode.UNAUTHENTICATED,
    Reason.TOKEN_EXPIRED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.REFRESH_TOKEN_REUSED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.ACCOUNT_LOCKED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.USER_ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
}


def grpc_code(error: IdentityError) -> grpc.StatusCode:
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND
    return _CODES.get(error.reason, grpc.StatusCode.INVALID_ARGUMENT)


def translate(exc: Exception) -> WireError | None:
    if isinstance(exc, IdentityError):
        metadata = {"field": exc.field} if exc.field else {}
        if isinstance(exc, AccountLocked):
            metadata["retry_after_seconds"] = str(exc.retry_after_seconds)
        return WireError(grpc_code(exc), exc.reason.value, exc.message, metadata)
    if isinstance(exc, DependencyUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            str(exc),
            {"dependency": exc.dependency},
        )
    if isinstance(exc, StorageUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            "the identity database is unavailable; nothing was changed, retry later",
        )
    if isinstance(exc, WriteConflict):
        return WireError(
            grpc.StatusCode.ABORTED,
            "DEPENDENCY_UNAVAILABLE",
            "a concurrent request changed the same record; nothing was changed, retry",
        )
    return None
