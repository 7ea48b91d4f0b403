"""The risk service's errors on the wire: RiskError -> gRPC status code.

A fraud verdict is never an error (DECLINE is a normal answer), and neither is
an unavailable Redis (the fallback answers). What remains: a request that
cannot be scored as given (INVALID_ARGUMENT and friends), a transaction id
reused with other inputs (ALREADY_EXISTS), an unknown decision id for replay
(NOT_FOUND), and an unreachable decision store (UNAVAILABLE: nothing was
recorded, retry).
"""

from __future__ import annotations

import grpc

from mesh.errors import WireError
from services.risk.domain.errors import (
    DecisionConflict,
    DecisionNotFound,
    InvalidRequest,
    RiskError,
)
from services.risk.service_layer.ports import StorageUnavailable


def grpc_code(exc: RiskError) -> grpc.StatusCode:
    if isinstance(exc, DecisionConflict):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, DecisionNotFound):
        return grpc.StatusCode.NOT_FOUND
    assert isinstance(exc, InvalidRequest) or type(exc) is RiskError
    return grpc.StatusCode.INVALID_ARGUMENT


def translate(exc: Exception) -> WireError | None:
    if isinstance(exc, RiskError):
        metadata = {"field": exc.field} if exc.field else {}
        return WireError(grpc_code(exc), exc.reason.value, exc.message, metadata)
    if isinstance(exc, StorageUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            "the risk decision store is unavailable; nothing was decided, retry later",
        )
    return None
