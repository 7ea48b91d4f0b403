"""The account service's errors on the wire: Reason -> gRPC status code.

Business refusals are never INTERNAL: each reason has the canonical code a
client can act on (fix the request, wait and retry, or give up).
"""

from __future__ import annotations

import grpc

from mesh.errors import WireError
from services.account.domain.errors import LedgerError, Reason
from services.account.service_layer.unit_of_work import StorageUnavailable, WriteConflict

_CODES: dict[Reason, grpc.StatusCode] = {
    Reason.EXISTS_WITH_DIFFERENT_FIELDS: grpc.StatusCode.ALREADY_EXISTS,
    Reason.ACCOUNT_ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Reason.LINKED_EVENT_FAILED: grpc.StatusCode.ABORTED,
    Reason.ACCOUNT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.DEBIT_ACCOUNT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.CREDIT_ACCOUNT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.PENDING_TRANSFER_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.ID_ALREADY_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ACCOUNT_FROZEN: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ACCOUNT_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ACCOUNT_BALANCE_NOT_ZERO: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.CURRENCY_MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.INSUFFICIENT_FUNDS: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.EXCEEDS_DEBITS: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.BALANCE_OVERFLOW: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_NOT_PENDING: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_ALREADY_POSTED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_ALREADY_VOIDED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.EXCEEDS_PENDING_AMOUNT: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY: grpc.StatusCode.FAILED_PRECONDITION,
}


def grpc_code(reason: Reason) -> grpc.StatusCode:
    """Request-shape reasons not listed above are INVALID_ARGUMENT."""
    return _CODES.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


def translate(exc: Exception) -> WireError | None:
    if isinstance(exc, LedgerError):
        metadata = {"field": exc.field} if exc.field else {}
        return WireError(grpc_code(exc.reason), exc.reason.value, exc.message, metadata)
    if isinstance(exc, StorageUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            "the ledger database is unavailable; nothing was changed, retry later",
        )
    if isinstance(exc, WriteConflict):
        # Only after every retry lost its race: rare, and safe to retry again.
        return WireError(
            grpc.StatusCode.ABORTED,
            "DEPENDENCY_UNAVAILABLE",
            "the ledger is busy with the same transfer id; nothing was changed, retry",
        )
    return None
