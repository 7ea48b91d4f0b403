"""What is stored for replays, the crash hook that must stay inert in production,
and the time budget outbound calls get."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from services.payment.adapters.snapshots import dump_response, load_response
from services.payment.domain.idempotency import StoredRefusal
from services.payment.domain.model import (
    ClientContext,
    PaymentRequest,
    PaymentStatus,
    RiskOutcome,
    new_payment,
)
from services.payment.service_layer import deadlines
from services.payment.service_layer.crash import crash_at, never

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_stored_payment_replays_exactly_as_it_was_answered() -> None:
    """Refunds, history, risk reasons and the device context survive the trip through JSON."""
    p = new_payment(
        PaymentRequest(
            "k",
            uuid.uuid4(),
            uuid.uuid4(),
            9_223_372_036_854_775_807,
            "EUR",
            "ref",
            "desc",
            ClientContext("MOBILE", "device-1", "10.0.0.1", 52.52, 13.405, "app/1.0"),
        ),
        payment_id=uuid.uuid4(),
        scope="user:u1",
        payer_customer_id="alice",
        review_timeout_seconds=60,
        actor="u1",
        now=NOW,
    )
    p.record_risk(RiskOutcome.APPROVE, ("NEW_DEVICE",), "d-1", NOW)
    p.transition(PaymentStatus.COMPLETED, "RISK_APPROVED", "payment", NOW)
    refund = p.start_refund(uuid.uuid4(), 5, "EUR", "broken", "user:u2", "r", NOW)
    p.complete_refund(refund.id, "payment", NOW)

    stored = json.loads(json.dumps(dump_response(p)))
    assert load_response(stored) == p


def test_a_stored_refusal_replays_as_the_same_refusal() -> None:
    """A refund the ledger refused is answered with the same reason on every replay."""
    refusal = StoredRefusal("INSUFFICIENT_FUNDS", "the ledger refused the refund")
    assert load_response(json.loads(json.dumps(dump_response(refusal)))) == refusal


def test_the_crash_hook_is_inert_unless_a_step_is_named() -> None:
    """Without BANKMESH_PAYMENT_CRASH_AT nothing can kill the process."""
    assert crash_at("") is never
    crash_at("after_risk")("after_persist")  # another step: nothing happens


def test_a_misspelt_crash_step_is_refused_at_start() -> None:
    """A typo in the hook would make a crash test pass without crashing; it fails loudly."""
    with pytest.raises(ValueError, match="names no step"):
        crash_at("after_transfr")


def test_outbound_calls_get_the_callers_remaining_time_minus_a_margin() -> None:
    """With 1.5 s left, a ledger call may take about 1.4 s; with no deadline, the default."""
    with deadlines.within(1.5):
        assert 1.3 < deadlines.budget(2.0) <= 1.5 - deadlines.MARGIN_SECONDS
    assert deadlines.budget(2.0) == 2.0


def test_a_caller_without_a_deadline_is_not_mistaken_for_a_patient_one() -> None:
    """'No deadline' reported as centuries is treated as no deadline: the default applies."""
    with deadlines.within(10**9):
        assert deadlines.remaining() is None
        assert deadlines.budget(2.0) == 2.0
