"""Every payment state change, review decision and refund is in the payment audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pytest

from bankmesh.payment.v1 import payment_service_pb2 as svc
from services.common.audit.reader import verify_database

from .conftest import Bank, ScriptedRisk
from .test_review_and_refunds import REVIEWER, held, refund

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

pytestmark = pytest.mark.integration


def payment_events(url: str, payment_id: str) -> list[tuple[str, str | None, str | None, str]]:
    with psycopg.connect(url) as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT action, details->>'from', coalesce(details->>'to', "
                "details->>'decision'), actor FROM audit.events "
                "WHERE subject = %s OR details->>'payment_id' = %s ORDER BY seq",
                (payment_id, payment_id),
            )
        ]


async def test_a_reviewed_then_refunded_payment_leaves_its_whole_story_in_the_chain(
    stub: Stub, bank: Bank, risk: ScriptedRisk, payment_database_url: str
) -> None:
    """Created, held for review, approved by the reviewer, refunded: one event per step."""
    _, _, payment_id = await held(stub, bank, risk)
    await stub.ApprovePayment(svc.ApprovePaymentRequest(payment_id=payment_id), metadata=REVIEWER)
    await refund(stub, payment_id)
    events = payment_events(payment_database_url, payment_id)
    assert events[:4] == [
        ("payment.status_changed", None, "PENDING", events[0][3]),
        ("payment.status_changed", "PENDING", "IN_REVIEW", events[1][3]),
        ("payment.review_decided", None, "APPROVE", "user:rev-1"),
        ("payment.status_changed", "IN_REVIEW", "COMPLETED", "user:rev-1"),
    ]
    refunds = [(e[0], e[2]) for e in events[4:]]
    assert ("refund.status_changed", "COMPLETED") in refunds
    assert verify_database(payment_database_url, "payment").intact
