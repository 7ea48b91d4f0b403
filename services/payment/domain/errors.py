"""Why the payment service says no.

Every refusal carries a `Reason` named as in `bankmesh.common.v1.ErrorReason`
(without its prefix), so one word means one thing on every wire.

    PaymentError                   (a Reason, a message, optionally a field)
     ├── InvalidRequest            request shape: INVALID_*, ACCOUNTS_MUST_BE_DIFFERENT
     ├── PaymentNotFound           PAYMENT_NOT_FOUND (also: exists but not yours)
     ├── AccountNotFound           ACCOUNT_NOT_FOUND (also: exists but not yours)
     ├── PermissionDenied          PERMISSION_DENIED (the role is missing)
     ├── IdempotencyKeyReused      the key was used with other parameters
     ├── IdempotencyKeyInUse       the first request with the key is still running
     ├── PaymentNotInReview        approve/reject of a payment nobody needs to review
     ├── PaymentNotRefundable      refund of a payment that moved no money
     ├── RefundExceedsPayment      refund of more than is left to refund
     └── LedgerRefused             the ledger refused a refund (its reason, e.g.
                                   INSUFFICIENT_FUNDS when the payee spent the money)

`IllegalTransition` is not a PaymentError: the use cases check the state
before they change it, so reaching it means a bug, and a bug is INTERNAL.
"""

from __future__ import annotations

import enum

from services.common.errors import ServiceError


class Reason(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_ID = "INVALID_ID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    ACCOUNTS_MUST_BE_DIFFERENT = "ACCOUNTS_MUST_BE_DIFFERENT"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 - a reason name, not a secret

    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"

    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"

    PAYMENT_NOT_FOUND = "PAYMENT_NOT_FOUND"
    PAYMENT_NOT_IN_REVIEW = "PAYMENT_NOT_IN_REVIEW"
    REFUND_EXCEEDS_PAYMENT = "REFUND_EXCEEDS_PAYMENT"
    PAYMENT_NOT_REFUNDABLE = "PAYMENT_NOT_REFUNDABLE"

    PERMISSION_DENIED = "PERMISSION_DENIED"


class PaymentError(ServiceError[str]):
    """A request the payment service refuses, with a reason a client can act on."""

    reason = Reason.INVALID_ARGUMENT


class InvalidRequest(PaymentError):
    reason = Reason.INVALID_ARGUMENT


class PaymentNotFound(PaymentError):
    reason = Reason.PAYMENT_NOT_FOUND


class AccountNotFound(PaymentError):
    reason = Reason.ACCOUNT_NOT_FOUND


class PermissionDenied(PaymentError):
    reason = Reason.PERMISSION_DENIED


class IdempotencyKeyReused(PaymentError):
    reason = Reason.IDEMPOTENCY_KEY_REUSED


class IdempotencyKeyInUse(PaymentError):
    reason = Reason.IDEMPOTENCY_KEY_IN_USE


class PaymentNotInReview(PaymentError):
    reason = Reason.PAYMENT_NOT_IN_REVIEW


class PaymentNotRefundable(PaymentError):
    reason = Reason.PAYMENT_NOT_REFUNDABLE


class RefundExceedsPayment(PaymentError):
    reason = Reason.REFUND_EXCEEDS_PAYMENT


class LedgerRefused(PaymentError):
    """The ledger refused a transfer the caller is waiting for; `reason` is the ledger's."""


class IllegalTransition(Exception):
    """A status change the state machine does not allow (a bug, never a client error)."""
