"""Idempotency keys with Stripe's semantics, as values and rules.

A client sends a key with every mutation. The first request with a key is
executed and its response stored with a fingerprint of its parameters:

* same key, same parameters  -> the stored response, replayed (nothing runs again);
* same key, other parameters -> IDEMPOTENCY_KEY_REUSED;
* same key while the first is still running -> wait for it, then replay.

Keys live per scope (see `access.Caller.scope`) and per service, not per
method: a key used for CreatePayment and then for RefundPayment is "other
parameters", because the operation is part of the fingerprint.

The fingerprint covers what the client *intends* (accounts, amount,
currency, reference, description; for refunds the payment, amount and
reason) and leaves out the client context: a phone that changes networks
between two tries of one payment is still asking for the same payment.

Only outcomes are stored. A request refused before it started (bad shape,
someone else's account, a dependency down before anything was written)
leaves no record, so fixing the request and retrying with the same key works.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from .errors import IdempotencyKeyReused
from .model import Payment, PaymentRequest


class Operation(enum.StrEnum):
    CREATE_PAYMENT = "CREATE_PAYMENT"
    REFUND_PAYMENT = "REFUND_PAYMENT"


@dataclass(frozen=True, slots=True)
class StoredRefusal:
    """A refusal that happened after the work started; replayed like a payment."""

    reason: str
    message: str


StoredResponse = Payment | StoredRefusal


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    scope: str
    key: str
    operation: Operation
    fingerprint: bytes
    payment_id: uuid.UUID
    created_at: datetime
    refund_id: uuid.UUID | None = None
    # None while the first request (or whoever resumes it) is still working.
    response: StoredResponse | None = None

    def check(self, fingerprint: bytes) -> None:
        if fingerprint != self.fingerprint:
            raise IdempotencyKeyReused(
                "this idempotency key was already used with other parameters; "
                "use a new key for a new request",
                field="idempotency_key",
            )


def fingerprint(operation: Operation, fields: dict[str, object]) -> bytes:
    canonical = json.dumps([operation.value, fields], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


def create_fingerprint(request: PaymentRequest) -> bytes:
    return fingerprint(
        Operation.CREATE_PAYMENT,
        {
            "source": str(request.source_account_id),
            "destination": str(request.destination_account_id),
            "amount": request.amount,
            "currency": request.currency,
            "reference": request.reference,
            "description": request.description,
        },
    )


def refund_fingerprint(
    payment_id: uuid.UUID, amount: int | None, currency: str | None, reason: str
) -> bytes:
    return fingerprint(
        Operation.REFUND_PAYMENT,
        {
            "payment": str(payment_id),
            # "Everything left" is its own intent, distinct from any explicit amount.
            "amount": amount,
            "currency": currency,
            "reason": reason,
        },
    )
