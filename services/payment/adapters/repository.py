"""The payment service's PostgreSQL repository: rows <-> domain values, nothing more.

Every method runs on the connection of the caller's transaction; the unit of
work owns begin/commit. Payments are updated only at the version they were
read at (a stale write is a WriteConflict), history rows are only ever
appended, and the deferred triggers of the schema re-check the state machine
and the refund arithmetic at commit.

What is written is also told to the audit log (services.common.audit), in
the same transaction: every status change (creation included: None ->
PENDING), every refund created or settled, and every review decision taken.
The event's actor is whoever made the call being served (`system` for the
recovery loop); the history's own actor goes into its details.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit.events import AuditEvent, Outcome
from services.common.audit.origin import current_origin
from services.common.audit.store import AuditTrail
from services.payment.domain.idempotency import IdempotencyRecord, Operation, StoredResponse
from services.payment.domain.model import (
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    ReviewDecision,
    RiskOutcome,
    StatusChange,
)
from services.payment.service_layer.unit_of_work import WriteConflict

from . import snapshots
from . import tables as t


class PaymentRepository:
    def __init__(self, connection: AsyncConnection, audit: AuditTrail | None = None) -> None:
        self._conn = connection
        self._audit = audit if audit is not None else AuditTrail()

    # -- idempotency keys -----------------------------------------------------------

    async def get_key(self, scope: str, key: str) -> IdempotencyRecord | None:
        k = t.idempotency_keys
        row = (
            (await self._conn.execute(select(k).where(k.c.scope == scope, k.c.key == key)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return IdempotencyRecord(
            scope=row["scope"],
            key=row["key"],
            operation=Operation(row["operation"]),
            fingerprint=bytes(row["fingerprint"]),
            payment_id=row["payment_id"],
            created_at=row["created_at"],
            refund_id=row["refund_id"],
            response=None if row["response"] is None else snapshots.load_response(row["response"]),
        )

    async def add_key(self, record: IdempotencyRecord) -> bool:
        stmt = (
            pg_insert(t.idempotency_keys)
            .values(
                scope=record.scope,
                key=record.key,
                operation=record.operation.value,
                fingerprint=record.fingerprint,
                payment_id=record.payment_id,
                refund_id=record.refund_id,
                created_at=record.created_at,
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(t.idempotency_keys.c.key)
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def store_response(
        self, scope: str, key: str, response: StoredResponse, now: datetime
    ) -> None:
        k = t.idempotency_keys
        await self._conn.execute(
            update(k)
            .where(k.c.scope == scope, k.c.key == key, k.c.response.is_(None))
            .values(response=snapshots.dump_response(response), completed_at=now)
        )

    # -- payments -------------------------------------------------------------------------

    async def add(self, payment: Payment) -> bool:
        stmt = (
            pg_insert(t.payments)
            .values(_payment_row(payment))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.payments.c.id)
        )
        if (await self._conn.execute(stmt)).first() is None:
            return False
        await self._append_history(payment)
        await self._upsert_refunds(payment)
        return True

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        row = (
            (await self._conn.execute(select(t.payments).where(t.payments.c.id == payment_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        (payment,) = await self._complete([row])
        return payment

    async def save(self, payment: Payment) -> None:
        row = _payment_row(payment)
        for fixed in ("id", "scope", "idempotency_key", "created_at"):
            del row[fixed]
        row["version"] = payment.version + 1
        p = t.payments
        if payment.review_decision is not None:
            stored = await self._conn.scalar(
                select(p.c.review_decision).where(p.c.id == payment.id)
            )
            if stored is None:
                self._audit_review(payment)
        result = await self._conn.execute(
            update(p).where(p.c.id == payment.id, p.c.version == payment.version).values(row)
        )
        if result.rowcount != 1:
            raise WriteConflict(f"payment {payment.id} changed since it was read")
        await self._append_history(payment)
        await self._upsert_refunds(payment)
        payment.version += 1

    def _audit_review(self, payment: Payment) -> None:
        assert payment.review_decision is not None
        self._audit.add(
            AuditEvent.by(
                current_origin(),
                "payment.review_decided",
                Outcome.SUCCESS,
                payment.updated_at,
                str(payment.id),
                {
                    "decision": payment.review_decision.value,
                    "reviewer": payment.review_actor,
                    **_money(payment),
                },
            )
        )

    async def list_for_account(
        self, account_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Payment]:
        # Two index range scans (payer side, payee side) merged here, rather than
        # one OR that would make PostgreSQL sort every payment of the account.
        p = t.payments
        rows: list[RowMapping] = []
        for column in (p.c.source_account_id, p.c.destination_account_id):
            stmt = select(p).where(column == account_id)
            if before is not None:
                stmt = stmt.where(tuple_(p.c.created_at, p.c.id) < tuple_(*before))
            stmt = stmt.order_by(p.c.created_at.desc(), p.c.id.desc()).limit(limit)
            rows += (await self._conn.execute(stmt)).mappings().all()
        rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
        return await self._complete(rows[:limit])

    async def needing_attention(
        self, now: datetime, stale_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        p, r = t.payments, t.refunds
        queries = [
            select(p.c.id)
            .where(p.c.status == PaymentStatus.PENDING.value, p.c.updated_at < stale_before)
            .order_by(p.c.updated_at)
            .limit(limit),
            select(p.c.id)
            .where(
                p.c.status == PaymentStatus.IN_REVIEW.value,
                ((p.c.review_decision.is_not(None)) & (p.c.updated_at < stale_before))
                | (p.c.hold_expires_at <= now),
            )
            .order_by(p.c.hold_expires_at)
            .limit(limit),
            select(r.c.payment_id)
            .where(r.c.status == RefundStatus.PENDING.value, r.c.updated_at < stale_before)
            .order_by(r.c.updated_at)
            .limit(limit),
        ]
        found: dict[uuid.UUID, None] = {}
        for query in queries:
            for payment_id in (await self._conn.scalars(query)).all():
                found[payment_id] = None
        return list(found)

    # -- helpers ---------------------------------------------------------------------------

    async def _complete(self, rows: Sequence[RowMapping]) -> list[Payment]:
        """Payments from their rows, with history and refunds read in two queries."""
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        history = await self._history(ids)
        refunds = await self._refunds(ids)
        payments = []
        for row in rows:
            payment = _payment(row)
            payment.history = history.get(payment.id, [])
            payment.stored_history = len(payment.history)
            payment.refunds = refunds.get(payment.id, [])
            payments.append(payment)
        return payments

    async def _history(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[StatusChange]]:
        h = t.status_changes
        stmt = select(h).where(h.c.payment_id.in_(list(ids))).order_by(h.c.payment_id, h.c.seq)
        found: dict[uuid.UUID, list[StatusChange]] = {}
        for row in (await self._conn.execute(stmt)).mappings():
            found.setdefault(row["payment_id"], []).append(
                StatusChange(
                    from_status=PaymentStatus(row["from_status"]) if row["from_status"] else None,
                    to_status=PaymentStatus(row["to_status"]),
                    reason=row["reason"],
                    actor=row["actor"],
                    at=row["changed_at"],
                )
            )
        return found

    async def _refunds(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Refund]]:
        r = t.refunds
        stmt = (
            select(r)
            .where(r.c.payment_id.in_(list(ids)))
            .order_by(r.c.payment_id, r.c.created_at, r.c.id)
        )
        found: dict[uuid.UUID, list[Refund]] = {}
        for row in (await self._conn.execute(stmt)).mappings():
            found.setdefault(row["payment_id"], []).append(
                Refund(
                    id=row["id"],
                    amount=row["amount"],
                    reason=row["reason"],
                    scope=row["scope"],
                    idempotency_key=row["idempotency_key"],
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                    status=RefundStatus(row["status"]),
                    failure_reason=row["failure_reason"],
                )
            )
        return found

    async def _append_history(self, payment: Payment) -> None:
        new = payment.history[payment.stored_history :]
        if new:
            origin = current_origin()
            self._audit.extend(
                [
                    AuditEvent.by(
                        origin,
                        "payment.status_changed",
                        Outcome.SUCCESS,
                        h.at,
                        str(payment.id),
                        {
                            "from": h.from_status.value if h.from_status else None,
                            "to": h.to_status.value,
                            "reason": h.reason,
                            "changed_by": h.actor,
                            **_money(payment),
                        },
                    )
                    for h in new
                ]
            )
            # One multi-row INSERT keeps the order, so each row continues the one before.
            await self._conn.execute(
                pg_insert(t.status_changes).values(
                    [
                        {
                            "payment_id": payment.id,
                            "from_status": h.from_status.value if h.from_status else None,
                            "to_status": h.to_status.value,
                            "reason": h.reason,
                            "actor": h.actor,
                            "changed_at": h.at,
                        }
                        for h in new
                    ]
                )
            )
        payment.stored_history = len(payment.history)

    async def _upsert_refunds(self, payment: Payment) -> None:
        if not payment.refunds:
            return
        r = t.refunds
        stored = {
            row.id: row.status
            for row in await self._conn.execute(
                select(r.c.id, r.c.status).where(r.c.payment_id == payment.id)
            )
        }
        origin = current_origin()
        for refund in payment.refunds:
            if stored.get(refund.id) != refund.status.value:
                details = {
                    "payment_id": str(payment.id),
                    "from": stored.get(refund.id),
                    "to": refund.status.value,
                    "amount": refund.amount,
                    "currency": payment.currency,
                    "reason": refund.reason,
                }
                if refund.failure_reason:
                    details["failure_reason"] = refund.failure_reason
                self._audit.add(
                    AuditEvent.by(
                        origin,
                        "refund.status_changed",
                        Outcome.SUCCESS,
                        refund.updated_at,
                        str(refund.id),
                        details,
                    )
                )
        stmt = pg_insert(t.refunds).values(
            [
                {
                    "id": r.id,
                    "payment_id": payment.id,
                    "scope": r.scope,
                    "idempotency_key": r.idempotency_key,
                    "amount": r.amount,
                    "reason": r.reason,
                    "status": r.status.value,
                    "failure_reason": r.failure_reason,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                }
                for r in payment.refunds
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "status": stmt.excluded.status,
                "failure_reason": stmt.excluded.failure_reason,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await self._conn.execute(stmt)


def _money(p: Payment) -> dict[str, Any]:
    return {
        "amount": p.amount,
        "currency": p.currency,
        "source_account_id": str(p.source_account_id),
        "destination_account_id": str(p.destination_account_id),
    }


def _payment_row(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "scope": p.scope,
        "idempotency_key": p.idempotency_key,
        "source_account_id": p.source_account_id,
        "destination_account_id": p.destination_account_id,
        "amount": p.amount,
        "currency": p.currency,
        "reference": p.reference,
        "description": p.description,
        "client_context": snapshots.dump_context(p.client_context),
        "payer_customer_id": p.payer_customer_id,
        "status": p.status.value,
        "risk_outcome": p.risk_outcome.value if p.risk_outcome else None,
        "risk_reasons": list(p.risk_reasons),
        "risk_decision_id": p.risk_decision_id,
        "risk_unavailable": p.risk_unavailable,
        "failure_reason": p.failure_reason,
        "refunded_amount": p.refunded_amount,
        "review_timeout_seconds": p.review_timeout_seconds,
        "hold_expires_at": p.hold_expires_at,
        "review_decision": p.review_decision.value if p.review_decision else None,
        "review_actor": p.review_actor,
        "review_note": p.review_note,
        "version": p.version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _payment(row: RowMapping) -> Payment:
    return Payment(
        id=row["id"],
        scope=row["scope"],
        idempotency_key=row["idempotency_key"],
        source_account_id=row["source_account_id"],
        destination_account_id=row["destination_account_id"],
        amount=row["amount"],
        currency=row["currency"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        review_timeout_seconds=row["review_timeout_seconds"],
        reference=row["reference"],
        description=row["description"],
        client_context=snapshots.load_context(row["client_context"]),
        payer_customer_id=row["payer_customer_id"],
        status=PaymentStatus(row["status"]),
        risk_outcome=RiskOutcome(row["risk_outcome"]) if row["risk_outcome"] else None,
        risk_reasons=tuple(row["risk_reasons"]),
        risk_decision_id=row["risk_decision_id"],
        risk_unavailable=row["risk_unavailable"],
        failure_reason=row["failure_reason"],
        refunded_amount=row["refunded_amount"],
        hold_expires_at=row["hold_expires_at"],
        review_decision=(
            ReviewDecision(row["review_decision"]) if row["review_decision"] else None
        ),
        review_actor=row["review_actor"],
        review_note=row["review_note"],
        version=row["version"],
    )
