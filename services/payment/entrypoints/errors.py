"""The payment service's errors on the wire: reason -> gRPC status code.

Business refusals are never INTERNAL: each has the canonical code a client
can act on. Two are about waiting rather than refusing:

* IDEMPOTENCY_KEY_IN_USE (ABORTED): the first request with the key is still
  running; retry with the same key to get its answer.
* DEPENDENCY_UNAVAILABLE (UNAVAILABLE): risk, the ledger or our database did
  not answer; what was already accepted is kept and finished later, and a
  retry with the same key is always safe.

Ledger refusals of a refund keep the ledger's reason (INSUFFICIENT_FUNDS,
ACCOUNT_FROZEN, ...) and the code the account service uses for it.
"""

from __future__ import annotations

import grpc

from mesh.errors import WireError
from services.payment.domain.errors import PaymentError, Reason
from services.payment.service_layer.ports import DependencyUnavailable
from services.payment.service_layer.unit_of_work import StorageUnavailable, WriteConflict

_CODES: dict[str, grpc.StatusCode] = {
    Reason.IDEMPOTENCY_KEY_REUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.IDEMPOTENCY_KEY_IN_USE: grpc.StatusCode.ABORTED,
    Reason.ACCOUNT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.PAYMENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.PAYMENT_NOT_IN_REVIEW: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.REFUND_EXCEEDS_PAYMENT: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PAYMENT_NOT_REFUNDABLE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    # Ledger reasons a refund can meet, with the account service's codes.
    "DEBIT_ACCOUNT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "CREDIT_ACCOUNT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "PENDING_TRANSFER_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "EXISTS_WITH_DIFFERENT_FIELDS": grpc.StatusCode.ALREADY_EXISTS,
}
_REQUEST_SHAPE = frozenset(
    {
        Reason.INVALID_ARGUMENT,
        Reason.INVALID_ID,
        Reason.INVALID_AMOUNT,
        Reason.INVALID_CURRENCY,
        Reason.ACCOUNTS_MUST_BE_DIFFERENT,
        Reason.INVALID_PAGE_TOKEN,
    }
)


def grpc_code(reason: str) -> grpc.StatusCode:
    """Request-shape reasons are INVALID_ARGUMENT; other refusals FAILED_PRECONDITION."""
    if reason in _REQUEST_SHAPE:
        return grpc.StatusCode.INVALID_ARGUMENT
    return _CODES.get(reason, grpc.StatusCode.FAILED_PRECONDITION)


def translate(exc: Exception) -> WireError | None:
    if isinstance(exc, PaymentError):
        metadata = {"field": exc.field} if exc.field else {}
        return WireError(grpc_code(exc.reason), exc.reason, exc.message, metadata)
    if isinstance(exc, DependencyUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            f"{exc}; anything already accepted is kept and finished later; "
            "retrying with the same idempotency key is safe",
            {"service": exc.service},
        )
    if isinstance(exc, StorageUnavailable):
        return WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            "the payment database is unavailable; retrying with the same key is safe",
        )
    if isinstance(exc, WriteConflict):
        return WireError(
            grpc.StatusCode.ABORTED,
            "DEPENDENCY_UNAVAILABLE",
            "the payment is busy with another request; nothing was changed, retry",
        )
    return None
