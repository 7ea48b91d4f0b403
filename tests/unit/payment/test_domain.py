"""The payment domain without any I/O: the state machine, refund arithmetic,
idempotency fingerprints, derived ids and who may do what."""

from __future__ import annotations

import importlib
import re
import uuid
from datetime import UTC, datetime

import pytest

from services.payment.domain import ids
from services.payment.domain.access import Caller, CallerKind
from services.payment.domain.errors import (
    IdempotencyKeyReused,
    IllegalTransition,
    InvalidRequest,
    PaymentNotInReview,
    PaymentNotRefundable,
    PermissionDenied,
    RefundExceedsPayment,
)
from services.payment.domain.idempotency import (
    IdempotencyRecord,
    Operation,
    create_fingerprint,
    refund_fingerprint,
)
from services.payment.domain.model import (
    FINAL_STATUSES,
    TRANSITIONS,
    ClientContext,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RefundStatus,
    ReviewDecision,
    RiskOutcome,
    Route,
    new_payment,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALICE, BOB = uuid.uuid4(), uuid.uuid4()
S = PaymentStatus


def request(**changes: object) -> PaymentRequest:
    fields: dict[str, object] = {
        "idempotency_key": "k-1",
        "source_account_id": ALICE,
        "destination_account_id": BOB,
        "amount": 10_000,
        "currency": "EUR",
        "reference": "rent",
    }
    fields.update(changes)
    return PaymentRequest(**fields)  # type: ignore[arg-type]


def payment(status: PaymentStatus = S.PENDING, amount: int = 10_000) -> Payment:
    p = new_payment(
        request(amount=amount),
        payment_id=uuid.uuid4(),
        scope="service:test",
        payer_customer_id="alice",
        review_timeout_seconds=3600,
        actor="test",
        now=NOW,
    )
    path = {
        S.PENDING: [],
        S.COMPLETED: [S.COMPLETED],
        S.IN_REVIEW: [S.IN_REVIEW],
        S.DECLINED: [S.DECLINED],
        S.FAILED: [S.FAILED],
        S.REJECTED: [S.IN_REVIEW, S.REJECTED],
        S.EXPIRED: [S.IN_REVIEW, S.EXPIRED],
        S.PARTIALLY_REFUNDED: [S.COMPLETED, S.PARTIALLY_REFUNDED],
        S.REFUNDED: [S.COMPLETED, S.REFUNDED],
    }[status]
    for step in path:
        p.transition(step, "TEST", "test", NOW)
    return p


def route_of(p: Payment) -> Route | None:
    # A call, so the type checker does not carry the first answer over to the second.
    return p.route


# -- the state machine -------------------------------------------------------------------


ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() if a for b in targets]
REFUSED = [(a, b) for a in S for b in S if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("start", "end"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_transition_is_taken_and_written_down(
    start: PaymentStatus, end: PaymentStatus
) -> None:
    """An allowed change sets the status and appends who did it and why to the history."""
    p = payment(start)
    before = len(p.history)
    p.transition(end, "WHY", "someone", NOW)
    assert p.status is end
    assert len(p.history) == before + 1
    change = p.history[-1]
    assert (change.from_status, change.to_status, change.reason, change.actor) == (
        start,
        end,
        "WHY",
        "someone",
    )


@pytest.mark.parametrize(("start", "end"), REFUSED, ids=[f"{a}->{b}" for a, b in REFUSED])
def test_every_other_transition_is_refused_and_changes_nothing(
    start: PaymentStatus, end: PaymentStatus
) -> None:
    """A change the machine does not draw (e.g. DECLINED -> COMPLETED) is refused."""
    p = payment(start)
    history = list(p.history)
    with pytest.raises(IllegalTransition):
        p.transition(end, "WHY", "someone", NOW)
    assert p.status is start
    assert p.history == history


def test_nothing_leaves_a_final_status_and_completed_leaves_only_by_refund() -> None:
    """DECLINED, FAILED, REJECTED, EXPIRED and REFUNDED are the end; COMPLETED may be refunded."""
    assert {S.DECLINED, S.FAILED, S.REJECTED, S.EXPIRED, S.REFUNDED} == FINAL_STATUSES
    assert TRANSITIONS[S.COMPLETED] == {S.PARTIALLY_REFUNDED, S.REFUNDED}


def test_the_database_knows_the_same_state_machine_as_the_domain() -> None:
    """The migration's allowed_transitions table lists exactly the domain's edges."""
    migration = importlib.import_module(
        "services.payment.adapters.migrations.versions.0001_payments"
    )
    seeded = migration.SCHEMA_SQL.split("INSERT INTO payment.allowed_transitions VALUES")[1]
    pairs = set(re.findall(r"\('(\w*)', '(\w+)'\)", seeded.split(";")[0]))
    domain = {("" if a is None else a.value, b.value) for a, t in TRANSITIONS.items() for b in t}
    assert pairs == domain


def test_a_new_payment_starts_pending_with_one_history_line() -> None:
    """Creation is itself in the history: (none) -> PENDING, by the caller."""
    p = payment()
    assert p.status is S.PENDING
    assert [(h.from_status, h.to_status, h.reason) for h in p.history] == [
        (None, S.PENDING, "CREATED")
    ]


def test_the_route_is_fixed_by_the_first_risk_answer() -> None:
    """Once risk decided (or was down) the route cannot change: a resumed payment follows it."""
    p = payment()
    assert route_of(p) is None
    p.record_risk_unavailable(NOW)
    assert route_of(p) is Route.HOLD
    with pytest.raises(IllegalTransition):
        p.record_risk(RiskOutcome.APPROVE, (), "d", NOW)
    q = payment()
    q.record_risk(RiskOutcome.DECLINE, ("DENY_LIST",), "d", NOW)
    assert q.route is Route.NONE


def test_a_review_decision_may_be_repeated_but_not_reversed() -> None:
    """Approving twice is a retry; rejecting after an approval is refused."""
    p = payment(S.IN_REVIEW)
    p.decide_review(ReviewDecision.APPROVE, "rev-1", "looks fine", NOW)
    p.decide_review(ReviewDecision.APPROVE, "rev-2", "again", NOW)
    assert (p.review_actor, p.review_note) == ("rev-1", "looks fine")
    with pytest.raises(PaymentNotInReview):
        p.decide_review(ReviewDecision.REJECT, "rev-2", "", NOW)


def test_only_payments_in_review_can_be_decided() -> None:
    """Approving a completed payment is PAYMENT_NOT_IN_REVIEW."""
    with pytest.raises(PaymentNotInReview):
        payment(S.COMPLETED).decide_review(ReviewDecision.APPROVE, "rev", "", NOW)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"idempotency_key": ""}, "INVALID_ARGUMENT"),
        ({"idempotency_key": "k" * 256}, "INVALID_ARGUMENT"),
        ({"idempotency_key": "new\nline"}, "INVALID_ARGUMENT"),
        ({"amount": 0}, "INVALID_AMOUNT"),
        ({"amount": 2**63}, "INVALID_AMOUNT"),
        ({"amount": 10.5}, "INVALID_AMOUNT"),
        ({"currency": "XXX"}, "INVALID_CURRENCY"),
        ({"destination_account_id": ALICE}, "ACCOUNTS_MUST_BE_DIFFERENT"),
        ({"reference": "r" * 141}, "INVALID_ARGUMENT"),
    ],
)
def test_bad_requests_are_refused_with_their_reason(
    changes: dict[str, object], reason: str
) -> None:
    """Each rule of a payment request has its own reason."""
    with pytest.raises(InvalidRequest) as refused:
        request(**changes).validate()
    assert refused.value.reason == reason


def test_the_longest_allowed_key_and_reference_are_accepted() -> None:
    """255 printable characters of key and 140 of reference are fine."""
    request(idempotency_key="k" * 255, reference="r" * 140).validate()


# -- refunds -----------------------------------------------------------------------------------


def test_partial_refunds_add_up_to_a_full_refund() -> None:
    """30 then 70 of 100: PARTIALLY_REFUNDED, then REFUNDED with 100 refunded."""
    p = payment(S.COMPLETED, amount=100)
    first = p.start_refund(uuid.uuid4(), 30, "EUR", "", "s", "r1", NOW)
    p.complete_refund(first.id, "test", NOW)
    assert (p.status, p.refunded_amount, p.refundable) == (S.PARTIALLY_REFUNDED, 30, 70)
    rest = p.start_refund(uuid.uuid4(), None, None, "", "s", "r2", NOW)
    assert rest.amount == 70
    p.complete_refund(rest.id, "test", NOW)
    assert (p.status, p.refunded_amount, p.refundable) == (S.REFUNDED, 100, 0)


def test_a_refund_never_exceeds_what_is_left() -> None:
    """Refunding 101 of 100, or anything after a full refund, is REFUND_EXCEEDS_PAYMENT."""
    p = payment(S.COMPLETED, amount=100)
    with pytest.raises(RefundExceedsPayment):
        p.start_refund(uuid.uuid4(), 101, "EUR", "", "s", "r1", NOW)
    full = p.start_refund(uuid.uuid4(), None, None, "", "s", "r2", NOW)
    p.complete_refund(full.id, "test", NOW)
    with pytest.raises(PaymentNotRefundable):
        p.start_refund(uuid.uuid4(), 1, "EUR", "", "s", "r3", NOW)


def test_a_refund_in_flight_counts_until_it_fails() -> None:
    """A pending refund reserves its amount; a refused one gives it back."""
    p = payment(S.COMPLETED, amount=100)
    pending = p.start_refund(uuid.uuid4(), 80, "EUR", "", "s", "r1", NOW)
    with pytest.raises(RefundExceedsPayment):
        p.start_refund(uuid.uuid4(), 30, "EUR", "", "s", "r2", NOW)
    p.fail_refund(pending.id, "INSUFFICIENT_FUNDS", NOW)
    assert p.refundable == 100
    assert p.status is S.COMPLETED
    assert p.refund(pending.id).status is RefundStatus.FAILED


@pytest.mark.parametrize(
    "status", [S.PENDING, S.IN_REVIEW, S.DECLINED, S.FAILED, S.REJECTED, S.EXPIRED, S.REFUNDED]
)
def test_only_payments_that_moved_money_can_be_refunded(status: PaymentStatus) -> None:
    """Refunding a payment that did not (or no longer) hold money is PAYMENT_NOT_REFUNDABLE."""
    with pytest.raises(PaymentNotRefundable):
        payment(status).start_refund(uuid.uuid4(), 1, "EUR", "", "s", "r", NOW)


def test_a_refund_is_in_the_payments_currency() -> None:
    """A refund in USD of a EUR payment is INVALID_CURRENCY."""
    p = payment(S.COMPLETED)
    with pytest.raises(InvalidRequest) as refused:
        p.start_refund(uuid.uuid4(), 10, "USD", "", "s", "r", NOW)
    assert refused.value.reason == "INVALID_CURRENCY"


# -- idempotency --------------------------------------------------------------------------------


def test_the_same_request_has_the_same_fingerprint() -> None:
    """A retry is recognised whatever device context it comes with."""
    again = request(client_context=ClientContext(ip_address="10.0.0.9", channel="MOBILE"))
    assert create_fingerprint(request()) == create_fingerprint(again)


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 10_001},
        {"currency": "USD"},
        {"destination_account_id": uuid.uuid4()},
        {"source_account_id": uuid.uuid4()},
        {"reference": "other"},
        {"description": "other"},
    ],
)
def test_any_change_of_intent_changes_the_fingerprint(changes: dict[str, object]) -> None:
    """Same key, other parameters: a different fingerprint, hence IDEMPOTENCY_KEY_REUSED."""
    first = create_fingerprint(request())
    record = IdempotencyRecord("s", "k", Operation.CREATE_PAYMENT, first, uuid.uuid4(), NOW)
    with pytest.raises(IdempotencyKeyReused):
        record.check(create_fingerprint(request(**changes)))


def test_refund_fingerprints_tell_the_rest_from_an_explicit_amount() -> None:
    """'Refund the rest' and 'refund 100' are different requests, and neither is a payment."""
    pid = uuid.uuid4()
    rest = refund_fingerprint(pid, None, None, "")
    explicit = refund_fingerprint(pid, 100, "EUR", "")
    assert len({rest, explicit, create_fingerprint(request())}) == 3
    assert refund_fingerprint(pid, 100, "EUR", "") == explicit


# -- derived ids ----------------------------------------------------------------------------------


def test_a_payment_id_is_a_function_of_scope_and_key() -> None:
    """Racing requests compute one id; another caller's same key is another payment."""
    assert ids.payment_id("user:a", "k") == ids.payment_id("user:a", "k")
    assert ids.payment_id("user:a", "k") != ids.payment_id("user:b", "k")
    assert ids.payment_id("user:a", "k") != ids.payment_id("user:a", "k2")


def test_scope_and_key_cannot_be_shuffled_into_the_same_id() -> None:
    """("a:b", "c") and ("a", "b:c") stay apart: the joining is injective."""
    assert ids.payment_id("a:b", "c") != ids.payment_id("a", "b:c")
    assert ids.payment_id('a", "b', "c") != ids.payment_id("a", 'b", "c')


def test_every_ledger_step_of_a_payment_has_its_own_stable_id() -> None:
    """transfer, hold, post, void and each refund differ, and are the same on every retry."""
    pid = uuid.uuid4()
    refund = ids.refund_id(pid, "s", "r1")
    steps = [ids.TRANSFER, ids.HOLD, ids.POST, ids.VOID, ids.refund_step(refund)]
    first = [ids.transfer_id(pid, step) for step in steps]
    assert len(set(first)) == len(steps)
    assert first == [ids.transfer_id(pid, step) for step in steps]
    assert ids.transfer_id(uuid.uuid4(), ids.TRANSFER) != first[0]
    assert ids.refund_id(pid, "s", "r1") == refund != ids.refund_id(pid, "s", "r2")


def test_derived_ids_do_not_drift_between_releases() -> None:
    """A retry after an upgrade must hit the same ledger id: the derivation is frozen."""
    pid = ids.payment_id("service:anonymous", "order-1")
    assert pid == uuid.UUID("cd6d2e9c-72d7-50eb-8806-b776d7dc57cb")
    assert ids.transfer_id(pid, ids.TRANSFER) == uuid.UUID("dcfa850d-1b1b-5728-8de3-d21b18038cdf")


# -- access ------------------------------------------------------------------------------------------


def test_callers_are_told_apart_by_what_the_mesh_vouched_for() -> None:
    """No end user: a service. A customer, staff with a role, or nobody at all."""
    assert Caller.service("").kind is CallerKind.SERVICE
    assert Caller.service("").scope == "service:anonymous"
    customer = Caller.end_user(
        "u1", customer_id="c1", roles=frozenset({"customer"}), is_customer=True
    )
    assert (customer.kind, customer.scope) == (CallerKind.CUSTOMER, "user:u1")
    staff = Caller.end_user("u2", customer_id="", roles=frozenset({"reviewer"}), is_customer=False)
    assert staff.kind is CallerKind.STAFF
    nobody = Caller.end_user("u3", customer_id="", roles=frozenset(), is_customer=False)
    assert nobody.kind is CallerKind.NOBODY


def test_only_reviewers_and_admins_decide_reviews() -> None:
    """A customer or a support agent approving a payment is PERMISSION_DENIED."""
    for roles, allowed in [({"reviewer"}, True), ({"admin"}, True), ({"support"}, False)]:
        caller = Caller.end_user("u", customer_id="", roles=frozenset(roles), is_customer=False)
        if allowed:
            caller.require_review()
        else:
            with pytest.raises(PermissionDenied):
                caller.require_review()
    customer = Caller.end_user(
        "u", customer_id="c", roles=frozenset({"customer"}), is_customer=True
    )
    with pytest.raises(PermissionDenied):
        customer.require_review()
    Caller.service("ops").require_review()


def test_an_end_user_without_any_role_may_do_nothing() -> None:
    """Default deny: no role, no reads, no payments."""
    nobody = Caller.end_user("u", customer_id="", roles=frozenset(), is_customer=False)
    for check in (nobody.require_read, nobody.require_create, nobody.require_refund):
        with pytest.raises(PermissionDenied):
            check()
