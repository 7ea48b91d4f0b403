"""Every id the payment service mints is derived, never random.

* A payment's id is uuid5 of (idempotency scope, idempotency key): two
  requests racing with one key compute the same id, so even inserts that
  slip past every lock collide on the primary key instead of creating two
  payments.
* A ledger transfer's id is uuid5 of (payment id, step). The steps are
  "transfer" (a payment posted at once), "hold" (the review hold), "post"
  and "void" (the reviewer's decision) and "refund:<refund id>". A retry
  after a crash re-sends the very same id, and the ledger, for which a
  transfer id is used once forever, answers EXISTS instead of moving money
  twice.
* A refund's id is uuid5 of (payment id, scope, refund idempotency key).

Scope and key are joined as a JSON array, which is injective: no choice of
scope and key can produce the same text as another pair.

The namespaces are fixed forever: changing one would give a retry of an old
request a new id, which is exactly the double payment this module prevents.
"""

from __future__ import annotations

import json
import uuid

PAYMENT_NAMESPACE = uuid.UUID("2d7f1f0e-5a61-4c3b-9a43-8f4c6b0e1d21")
TRANSFER_NAMESPACE = uuid.UUID("9b8e3c47-1f2a-4d6e-b5c0-7a1d2e3f4a5b")
REFUND_NAMESPACE = uuid.UUID("c4a1e2d3-6b7f-4e8a-9c0d-1e2f3a4b5c6d")

TRANSFER = "transfer"
HOLD = "hold"
POST = "post"
VOID = "void"


def payment_id(scope: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(PAYMENT_NAMESPACE, json.dumps([scope, idempotency_key]))


def transfer_id(payment: uuid.UUID, step: str) -> uuid.UUID:
    return uuid.uuid5(TRANSFER_NAMESPACE, f"{payment}:{step}")


def refund_id(payment: uuid.UUID, scope: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(REFUND_NAMESPACE, json.dumps([str(payment), scope, idempotency_key]))


def refund_step(refund: uuid.UUID) -> str:
    return f"refund:{refund}"
