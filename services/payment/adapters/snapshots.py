"""Stored idempotent responses: a payment as it was answered, frozen as JSON.

Replaying a key returns the response the first request got, even after the
payment moved on (refunded, say), as Stripe does; so the response is a copy
of the payment at that moment, history and refunds included, not a pointer
to the live row. Amounts stay integers in JSON; nothing passes through a float.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.payment.domain.idempotency import StoredRefusal, StoredResponse
from services.payment.domain.model import (
    ClientContext,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    ReviewDecision,
    RiskOutcome,
    StatusChange,
)

FORMAT_VERSION = 1


def dump_response(response: StoredResponse) -> dict[str, Any]:
    if isinstance(response, StoredRefusal):
        return {
            "v": FORMAT_VERSION,
            "refusal": {"reason": response.reason, "message": response.message},
        }
    return {"v": FORMAT_VERSION, "payment": dump_payment(response)}


def load_response(document: dict[str, Any]) -> StoredResponse:
    if "refusal" in document:
        refusal = document["refusal"]
        return StoredRefusal(refusal["reason"], refusal["message"])
    return load_payment(document["payment"])


def dump_context(c: ClientContext) -> dict[str, Any]:
    return {
        "channel": c.channel,
        "device_id": c.device_id,
        "ip_address": c.ip_address,
        "latitude": c.latitude,
        "longitude": c.longitude,
        "user_agent": c.user_agent,
    }


def load_context(d: dict[str, Any]) -> ClientContext:
    return ClientContext(
        channel=d.get("channel", ""),
        device_id=d.get("device_id", ""),
        ip_address=d.get("ip_address", ""),
        latitude=d.get("latitude"),
        longitude=d.get("longitude"),
        user_agent=d.get("user_agent", ""),
    )


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def dump_payment(p: Payment) -> dict[str, Any]:
    return {
        "id": str(p.id),
        "scope": p.scope,
        "idempotency_key": p.idempotency_key,
        "source_account_id": str(p.source_account_id),
        "destination_account_id": str(p.destination_account_id),
        "amount": p.amount,
        "currency": p.currency,
        "created_at": _time(p.created_at),
        "updated_at": _time(p.updated_at),
        "review_timeout_seconds": p.review_timeout_seconds,
        "reference": p.reference,
        "description": p.description,
        "client_context": dump_context(p.client_context),
        "payer_customer_id": p.payer_customer_id,
        "status": p.status.value,
        "risk_outcome": p.risk_outcome.value if p.risk_outcome else None,
        "risk_reasons": list(p.risk_reasons),
        "risk_decision_id": p.risk_decision_id,
        "risk_unavailable": p.risk_unavailable,
        "failure_reason": p.failure_reason,
        "refunded_amount": p.refunded_amount,
        "hold_expires_at": _time(p.hold_expires_at),
        "review_decision": p.review_decision.value if p.review_decision else None,
        "review_actor": p.review_actor,
        "review_note": p.review_note,
        "refunds": [
            {
                "id": str(r.id),
                "amount": r.amount,
                "reason": r.reason,
                "scope": r.scope,
                "idempotency_key": r.idempotency_key,
                "created_at": _time(r.created_at),
                "updated_at": _time(r.updated_at),
                "status": r.status.value,
                "failure_reason": r.failure_reason,
            }
            for r in p.refunds
        ],
        "history": [
            {
                "from": h.from_status.value if h.from_status else None,
                "to": h.to_status.value,
                "reason": h.reason,
                "actor": h.actor,
                "at": _time(h.at),
            }
            for h in p.history
        ],
    }


def load_payment(d: dict[str, Any]) -> Payment:
    created_at = _parse_time(d["created_at"])
    updated_at = _parse_time(d["updated_at"])
    assert created_at is not None and updated_at is not None
    history = []
    for h in d["history"]:
        at = _parse_time(h["at"])
        assert at is not None
        history.append(
            StatusChange(
                PaymentStatus(h["from"]) if h["from"] else None,
                PaymentStatus(h["to"]),
                h["reason"],
                h["actor"],
                at,
            )
        )
    refunds = []
    for r in d["refunds"]:
        r_created, r_updated = _parse_time(r["created_at"]), _parse_time(r["updated_at"])
        assert r_created is not None and r_updated is not None
        refunds.append(
            Refund(
                id=uuid.UUID(r["id"]),
                amount=r["amount"],
                reason=r["reason"],
                scope=r["scope"],
                idempotency_key=r["idempotency_key"],
                created_at=r_created,
                updated_at=r_updated,
                status=RefundStatus(r["status"]),
                failure_reason=r["failure_reason"],
            )
        )
    return Payment(
        id=uuid.UUID(d["id"]),
        scope=d["scope"],
        idempotency_key=d["idempotency_key"],
        source_account_id=uuid.UUID(d["source_account_id"]),
        destination_account_id=uuid.UUID(d["destination_account_id"]),
        amount=d["amount"],
        currency=d["currency"],
        created_at=created_at,
        updated_at=updated_at,
        review_timeout_seconds=d["review_timeout_seconds"],
        reference=d["reference"],
        description=d["description"],
        client_context=load_context(d["client_context"]),
        payer_customer_id=d["payer_customer_id"],
        status=PaymentStatus(d["status"]),
        risk_outcome=RiskOutcome(d["risk_outcome"]) if d["risk_outcome"] else None,
        risk_reasons=tuple(d["risk_reasons"]),
        risk_decision_id=d["risk_decision_id"],
        risk_unavailable=d["risk_unavailable"],
        failure_reason=d["failure_reason"],
        refunded_amount=d["refunded_amount"],
        hold_expires_at=_parse_time(d["hold_expires_at"]),
        review_decision=ReviewDecision(d["review_decision"]) if d["review_decision"] else None,
        review_actor=d["review_actor"],
        review_note=d["review_note"],
        refunds=refunds,
        history=history,
        stored_history=len(history),
    )
