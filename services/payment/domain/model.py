"""A payment, its life as a state machine, and its refunds, as plain values.

Money is an integer of minor units plus an ISO 4217 currency, as everywhere
in bankmesh. A payment's life:

    (new) ──▶ PENDING ──┬─ risk APPROVE, ledger posts ─────────▶ COMPLETED ──▶ PARTIALLY_REFUNDED ─┐
                        │                                            │            │  ▲  (again)     │
                        │                                            │            └──┘              │
                        │                                            └──────────────▶ REFUNDED ◀────┘
                        ├─ risk APPROVE, ledger refuses ─────────▶ FAILED
                        ├─ risk DECLINE ─────────────────────────▶ DECLINED
                        └─ risk REVIEW or risk unavailable,
                           ledger holds ──▶ IN_REVIEW ──┬─ reviewer approves, hold posted ──▶ COMPLETED
                           (ledger refuses the hold     ├─ reviewer rejects, hold voided ───▶ REJECTED
                            ─▶ FAILED)                  ├─ hold timed out in the ledger ────▶ EXPIRED
                                                        └─ post refused, hold voided ───────▶ FAILED

`Payment.transition` refuses anything not drawn here and appends every
change, with its reason and actor, to the payment's history.

Before money moves, the payment records *how* it will move (`route`): the
risk decision, or that risk was unavailable. A payment resumed after a
crash follows the recorded route and re-sends the same derived transfer id,
so a hold placed just before the crash is never joined by a second,
single-phase transfer.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.common.money import INT64_MAX, is_currency

from .errors import (
    IllegalTransition,
    InvalidRequest,
    PaymentNotInReview,
    PaymentNotRefundable,
    Reason,
    RefundExceedsPayment,
)

MAX_REFERENCE_LENGTH = 140
MAX_KEY_LENGTH = 255
# The ledger stores hold timeouts in a PostgreSQL integer.
MAX_REVIEW_TIMEOUT_SECONDS = 2**31 - 1


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    IN_REVIEW = "IN_REVIEW"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


_S = PaymentStatus
TRANSITIONS: dict[PaymentStatus | None, frozenset[PaymentStatus]] = {
    None: frozenset({_S.PENDING}),
    _S.PENDING: frozenset({_S.COMPLETED, _S.IN_REVIEW, _S.DECLINED, _S.FAILED}),
    _S.IN_REVIEW: frozenset({_S.COMPLETED, _S.REJECTED, _S.EXPIRED, _S.FAILED}),
    _S.COMPLETED: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED}),
    # A second partial refund is a change worth a history line, not a new status.
    _S.PARTIALLY_REFUNDED: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED}),
    _S.DECLINED: frozenset(),
    _S.FAILED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
    _S.REFUNDED: frozenset(),
}
FINAL_STATUSES = frozenset(s for s, targets in TRANSITIONS.items() if s and not targets)
# The statuses CreatePayment answers with once it is done (PENDING means "not yet").
SETTLED_STATUSES = frozenset({_S.COMPLETED, _S.IN_REVIEW, _S.DECLINED, _S.FAILED})
REFUNDABLE_STATUSES = frozenset({_S.COMPLETED, _S.PARTIALLY_REFUNDED})


class ChangeReason(enum.StrEnum):
    """History reasons of our own; ledger refusals are recorded with the ledger's reason."""

    CREATED = "CREATED"
    RISK_APPROVED = "RISK_APPROVED"
    RISK_REVIEW = "RISK_REVIEW"
    RISK_UNAVAILABLE = "RISK_UNAVAILABLE"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    REVIEW_APPROVED = "REVIEW_APPROVED"
    REVIEW_REJECTED = "REVIEW_REJECTED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    REFUNDED = "REFUNDED"


class RiskOutcome(enum.StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DECLINE = "DECLINE"


class Route(enum.StrEnum):
    """How money will move, fixed before it does."""

    TRANSFER = "TRANSFER"  # one single-phase transfer
    HOLD = "HOLD"  # a pending transfer, for a reviewer
    NONE = "NONE"  # declined: nothing moves


class ReviewDecision(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class RefundStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ClientContext:
    """Where the customer acted from. Only risk reads it; coordinates are not money."""

    channel: str = ""
    device_id: str = ""
    ip_address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class StatusChange:
    from_status: PaymentStatus | None
    to_status: PaymentStatus
    reason: str
    actor: str
    at: datetime


@dataclass(slots=True)
class Refund:
    id: uuid.UUID
    amount: int
    reason: str
    # The refund's own idempotency record, where its response is stored.
    scope: str
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    status: RefundStatus = RefundStatus.PENDING
    failure_reason: str = ""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a client asks for, validated by `validate`."""

    idempotency_key: str
    source_account_id: uuid.UUID
    destination_account_id: uuid.UUID
    amount: int
    currency: str
    reference: str = ""
    description: str = ""
    client_context: ClientContext = field(default_factory=ClientContext)

    def validate(self) -> None:
        validate_idempotency_key(self.idempotency_key)
        validate_amount(self.amount, self.currency)
        if self.source_account_id == self.destination_account_id:
            raise InvalidRequest(
                "source and destination accounts must differ",
                reason=Reason.ACCOUNTS_MUST_BE_DIFFERENT,
                field="destination_account_id",
            )
        if len(self.reference) > MAX_REFERENCE_LENGTH:
            raise InvalidRequest(
                f"reference is at most {MAX_REFERENCE_LENGTH} characters", field="reference"
            )


def validate_idempotency_key(key: str, field: str = "idempotency_key") -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"{field} is required: 1 to {MAX_KEY_LENGTH} printable characters, "
            "chosen by the client once per intent (a UUID is a good choice)",
            field=field,
        )


def validate_amount(amount: int, currency: str, field: str = "amount") -> None:
    if type(amount) is not int or not 0 < amount <= INT64_MAX:
        raise InvalidRequest(
            "the amount must be a positive whole number of minor units",
            reason=Reason.INVALID_AMOUNT,
            field=f"{field}.minor_units",
        )
    if not is_currency(currency):
        raise InvalidRequest(
            "the currency must be an ISO 4217 code such as 'EUR'",
            reason=Reason.INVALID_CURRENCY,
            field=f"{field}.currency_code",
        )


@dataclass(slots=True)
class Payment:
    """A payment and everything that happened to it. Changed only under its lock."""

    id: uuid.UUID
    scope: str
    idempotency_key: str
    source_account_id: uuid.UUID
    destination_account_id: uuid.UUID
    amount: int
    currency: str
    created_at: datetime
    updated_at: datetime
    # Hold timeout fixed at creation: a re-sent hold must carry the same fields.
    review_timeout_seconds: int
    reference: str = ""
    description: str = ""
    client_context: ClientContext = field(default_factory=ClientContext)
    # The source account's owner, for risk and for "is this payment mine?".
    payer_customer_id: str = ""
    status: PaymentStatus = PaymentStatus.PENDING
    risk_outcome: RiskOutcome | None = None
    risk_reasons: tuple[str, ...] = ()
    risk_decision_id: str = ""
    risk_unavailable: bool = False
    failure_reason: str = ""
    refunded_amount: int = 0
    hold_expires_at: datetime | None = None
    review_decision: ReviewDecision | None = None
    review_actor: str = ""
    review_note: str = ""
    refunds: list[Refund] = field(default_factory=list)
    history: list[StatusChange] = field(default_factory=list)
    # Storage bookkeeping, not part of what a payment is (nor of its equality):
    # the version the repository read (it updates only that one), and how many
    # history entries are already stored (the rest are new).
    version: int = field(default=0, compare=False)
    stored_history: int = field(default=0, compare=False)

    # -- the state machine ------------------------------------------------------

    def transition(self, to: PaymentStatus, reason: str, actor: str, now: datetime) -> None:
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"payment {self.id}: {self.status} -> {to} is not allowed")
        self.history.append(StatusChange(self.status, to, reason, actor, now))
        self.status = to
        self.updated_at = now

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    # -- risk and routing ----------------------------------------------------------

    @property
    def route(self) -> Route | None:
        """None until risk has decided (or was found unavailable)."""
        if self.risk_unavailable or self.risk_outcome is RiskOutcome.REVIEW:
            return Route.HOLD
        if self.risk_outcome is RiskOutcome.APPROVE:
            return Route.TRANSFER
        if self.risk_outcome is RiskOutcome.DECLINE:
            return Route.NONE
        return None

    def record_risk(
        self, outcome: RiskOutcome, reasons: tuple[str, ...], decision_id: str, now: datetime
    ) -> None:
        self._require_unrouted()
        self.risk_outcome = outcome
        self.risk_reasons = reasons
        self.risk_decision_id = decision_id
        self.updated_at = now

    def record_risk_unavailable(self, now: datetime) -> None:
        """Policy: unscored money is never posted; it is held for a reviewer instead."""
        self._require_unrouted()
        self.risk_unavailable = True
        self.updated_at = now

    def _require_unrouted(self) -> None:
        if self.status is not PaymentStatus.PENDING or self.route is not None:
            raise IllegalTransition(f"payment {self.id} has already been routed")

    @property
    def review_reason(self) -> ChangeReason:
        return ChangeReason.RISK_UNAVAILABLE if self.risk_unavailable else ChangeReason.RISK_REVIEW

    def fail(self, ledger_reason: str, actor: str, now: datetime) -> None:
        self.failure_reason = ledger_reason
        self.transition(PaymentStatus.FAILED, ledger_reason, actor, now)

    # -- review -----------------------------------------------------------------------

    def decide_review(self, decision: ReviewDecision, actor: str, note: str, now: datetime) -> None:
        """Record a reviewer's decision before the ledger is asked to carry it out.

        Deciding the same way again is allowed (a retry after a lost answer);
        the other way is not: the first decision is already on its way.
        """
        if self.status is not PaymentStatus.IN_REVIEW:
            raise PaymentNotInReview(
                f"payment {self.id} is {self.status}, not IN_REVIEW", field="payment_id"
            )
        if self.review_decision is not None and self.review_decision is not decision:
            raise PaymentNotInReview(
                f"payment {self.id} was already decided ({self.review_decision}) "
                "and is being settled",
                field="payment_id",
            )
        if self.review_decision is None:
            self.review_decision = decision
            self.review_actor = actor
            self.review_note = note
            self.updated_at = now

    # -- refunds ------------------------------------------------------------------------

    @property
    def refundable(self) -> int:
        """What may still be refunded: refunds in flight count as taken."""
        in_flight = sum(r.amount for r in self.refunds if r.status is RefundStatus.PENDING)
        return self.amount - self.refunded_amount - in_flight

    def start_refund(
        self,
        refund_id: uuid.UUID,
        amount: int | None,
        currency: str | None,
        reason: str,
        scope: str,
        idempotency_key: str,
        now: datetime,
    ) -> Refund:
        """A PENDING refund of `amount` (None: all that is left), or why not."""
        if self.status not in REFUNDABLE_STATUSES:
            raise PaymentNotRefundable(
                f"payment {self.id} is {self.status}; only COMPLETED or "
                "PARTIALLY_REFUNDED payments moved money that can be returned",
                field="payment_id",
            )
        left = self.refundable
        if amount is None:
            amount = left
            if amount <= 0:
                raise RefundExceedsPayment(
                    f"payment {self.id} has nothing left to refund", field="amount"
                )
        else:
            validate_amount(amount, currency or "")
            if currency != self.currency:
                raise InvalidRequest(
                    f"refunds are in the payment's currency, {self.currency}",
                    reason=Reason.INVALID_CURRENCY,
                    field="amount.currency_code",
                )
            if amount > left:
                raise RefundExceedsPayment(
                    f"at most {left} {self.currency} minor units are left to refund",
                    field="amount.minor_units",
                )
        refund = Refund(refund_id, amount, reason, scope, idempotency_key, now, now)
        self.refunds.append(refund)
        self.updated_at = now
        return refund

    def refund(self, refund_id: uuid.UUID) -> Refund:
        for r in self.refunds:
            if r.id == refund_id:
                return r
        raise KeyError(refund_id)

    def complete_refund(self, refund_id: uuid.UUID, actor: str, now: datetime) -> None:
        refund = self.refund(refund_id)
        if refund.status is not RefundStatus.PENDING:
            return
        refund.status = RefundStatus.COMPLETED
        refund.updated_at = now
        self.refunded_amount += refund.amount
        done = self.refunded_amount == self.amount
        to = PaymentStatus.REFUNDED if done else PaymentStatus.PARTIALLY_REFUNDED
        self.transition(to, ChangeReason.REFUNDED, actor, now)

    def fail_refund(self, refund_id: uuid.UUID, ledger_reason: str, now: datetime) -> None:
        refund = self.refund(refund_id)
        if refund.status is not RefundStatus.PENDING:
            return
        refund.status = RefundStatus.FAILED
        refund.failure_reason = ledger_reason
        refund.updated_at = now
        self.updated_at = now

    @property
    def completed_refunds(self) -> list[Refund]:
        return [r for r in self.refunds if r.status is RefundStatus.COMPLETED]


def new_payment(
    request: PaymentRequest,
    *,
    payment_id: uuid.UUID,
    scope: str,
    payer_customer_id: str,
    review_timeout_seconds: int,
    actor: str,
    now: datetime,
) -> Payment:
    request.validate()
    if not 0 < review_timeout_seconds <= MAX_REVIEW_TIMEOUT_SECONDS:
        raise ValueError("the review timeout must be a positive number of seconds")
    payment = Payment(
        id=payment_id,
        scope=scope,
        idempotency_key=request.idempotency_key,
        source_account_id=request.source_account_id,
        destination_account_id=request.destination_account_id,
        amount=request.amount,
        currency=request.currency,
        created_at=now,
        updated_at=now,
        review_timeout_seconds=review_timeout_seconds,
        reference=request.reference,
        description=request.description,
        client_context=request.client_context,
        payer_customer_id=payer_customer_id,
    )
    payment.history.append(
        StatusChange(None, PaymentStatus.PENDING, ChangeReason.CREATED, actor, now)
    )
    return payment
