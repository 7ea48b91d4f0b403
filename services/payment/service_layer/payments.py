"""Use cases of the payment service, over a unit of work, per-payment locks and two ports.

One payment, one lock: the first execution of an idempotency key, its
resumption (by a retry with the key or by the recovery loop), reviews and
refunds all change a payment only while holding `PaymentLocks.hold(id)`.
Inside the lock every step follows the same recipe:

1. write down what is about to happen (the PENDING payment with the route
   risk chose, the reviewer's decision, the PENDING refund) and commit;
2. ask the ledger, with a transfer id derived from the payment and the step;
3. write down what the ledger answered, and the idempotent response, in one
   transaction.

A crash between any two steps leaves a payment that says what it was doing;
`advance` picks it up from there and re-sends the same transfer id, which the
ledger answers with EXISTS if the first send got through. Money moves once.

CreatePayment with a key:

    validate ─▶ stored response? ─ yes ─▶ replay (or IDEMPOTENCY_KEY_REUSED)
                       │ no
                       ▼
                take the payment's lock, waiting at most the caller's deadline
                (IDEMPOTENCY_KEY_IN_USE when the first request is still running)
                       │
                       ▼
                stored response now? ─ yes ─▶ replay
                key claimed, no response? ─ yes ─▶ resume that payment
                       │ no
                       ▼
                check the source account (customers: their own) ─▶ risk
                ─▶ persist PENDING with its route + key ─▶ ledger ─▶ settle
                + store response (a decline is stored with its response at once)

When the ledger cannot be reached, CreatePayment answers with the payment
still PENDING and stores no response: a retry with the same key (or the
recovery loop) carries on where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.payment.domain import ids
from services.payment.domain.access import SYSTEM_ACTOR, Caller
from services.payment.domain.errors import (
    AccountNotFound,
    IdempotencyKeyInUse,
    LedgerRefused,
    PaymentNotFound,
    PermissionDenied,
)
from services.payment.domain.idempotency import (
    IdempotencyRecord,
    Operation,
    StoredRefusal,
    StoredResponse,
    create_fingerprint,
    refund_fingerprint,
)
from services.payment.domain.model import (
    ChangeReason,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RefundStatus,
    ReviewDecision,
    RiskOutcome,
    Route,
    new_payment,
    validate_amount,
    validate_idempotency_key,
)

from . import deadlines, pagination
from .crash import CrashHook, never
from .ports import (
    TRANSFER_CODE_REFUND,
    DependencyUnavailable,
    HoldState,
    LedgerPort,
    RiskDecision,
    RiskPort,
    RiskRequest,
    TransferKind,
    TransferOutcome,
    TransferRequest,
)
from .unit_of_work import Clock, LockTimeout, PaymentLocks, UnitOfWorkFactory, WriteConflict

log = logging.getLogger("bankmesh.payment")

DEFAULT_REVIEW_TIMEOUT_SECONDS = 72 * 3600


@dataclass(frozen=True, slots=True)
class Settings:
    # How long a review hold lasts in the ledger before it expires by itself.
    review_timeout_seconds: int = DEFAULT_REVIEW_TIMEOUT_SECONDS
    # How long a request waits for a busy payment when its caller set no deadline.
    default_wait_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class RefundRequest:
    payment_id: uuid.UUID
    idempotency_key: str
    # None: refund whatever has not been refunded yet.
    amount: int | None = None
    currency: str | None = None
    reason: str = ""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class LedgerInconsistency(Exception):
    """The ledger holds one of our derived ids with other fields: a bug, for an operator."""


class Payments:
    """The payment service's use cases, bound to storage, locks, the ledger and risk."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        locks: PaymentLocks,
        ledger: LedgerPort,
        risk: RiskPort,
        clock: Clock,
        settings: Settings | None = None,
        crash: CrashHook = never,
    ) -> None:
        self._uow = uow
        self._locks = locks
        self._ledger = ledger
        self._risk = risk
        self._clock = clock
        self._settings = settings or Settings()
        self._crash = crash

    # -- CreatePayment ---------------------------------------------------------------

    async def create(self, caller: Caller, request: PaymentRequest) -> Payment:
        caller.require_create()
        request.validate()
        fingerprint = create_fingerprint(request)
        scope, key = caller.scope, request.idempotency_key
        replayed = await self._replay(scope, key, fingerprint)
        if replayed is not None:
            return replayed
        payment_id = ids.payment_id(scope, key)
        async with self._keyed(payment_id):
            record = await self._key(scope, key)
            if record is not None:
                record.check(fingerprint)
                if record.response is not None:
                    return _replayed(record.response)
                # Claimed by a request that died (or gave up) half-way: finish its work.
                return await self._advance_quietly(await self._load(payment_id), SYSTEM_ACTOR)

            payer = await self._payer(caller, request.source_account_id)
            payment = new_payment(
                request,
                payment_id=payment_id,
                scope=scope,
                payer_customer_id=payer,
                review_timeout_seconds=self._settings.review_timeout_seconds,
                actor=caller.actor,
                now=self._clock.now(),
            )
            # Scored before it is stored, so it is stored once, with its route.
            # Risk keeps its decision by payment id: if we die before storing,
            # the client's retry (same key, same id) gets the same decision.
            await self._route(payment, SYSTEM_ACTOR)
            self._crash("after_risk")
            async with self._uow() as uow:
                claimed = await uow.payments.add_key(
                    IdempotencyRecord(
                        scope,
                        key,
                        Operation.CREATE_PAYMENT,
                        fingerprint,
                        payment_id,
                        payment.created_at,
                    )
                )
                if not claimed or not await uow.payments.add(payment):
                    # Only possible if two holders of the lock existed; the retry re-reads.
                    raise WriteConflict(f"payment {payment_id} was created concurrently")
                if payment.status is PaymentStatus.DECLINED:
                    await uow.payments.store_response(scope, key, payment, self._clock.now())
                await uow.commit()
            self._crash("after_persist")
            return await self._advance_quietly(payment, SYSTEM_ACTOR)

    async def _payer(self, caller: Caller, source_account_id: uuid.UUID) -> str:
        """The source account's owner; someone else's account is one that does not exist."""
        account = await self._ledger.get_account(source_account_id)
        if account is None or (caller.is_customer and account.customer_id != caller.customer_id):
            raise AccountNotFound(
                f"account {source_account_id} does not exist", field="source_account_id"
            )
        return account.customer_id

    # -- reads -------------------------------------------------------------------------

    async def get(self, caller: Caller, payment_id: uuid.UUID) -> Payment:
        caller.require_read()
        payment = await self._load(payment_id)
        if not await self._visible(caller, payment):
            raise _not_found(payment_id)
        return payment

    async def list_payments(
        self, caller: Caller, account_id: uuid.UUID, size: int, token: str
    ) -> Page[Payment]:
        caller.require_read()
        limit = pagination.page_size(size)
        scope = f"payments:{account_id}"
        before = pagination.decode(scope, token)
        if caller.is_customer:
            account = await self._ledger.get_account(account_id)
            if account is None or account.customer_id != caller.customer_id:
                raise AccountNotFound(f"account {account_id} does not exist", field="account_id")
        async with self._uow() as uow:
            payments = await uow.payments.list_for_account(account_id, before, limit + 1)
        next_token = ""
        if len(payments) > limit:
            payments = payments[:limit]
            last = payments[-1]
            next_token = pagination.encode(scope, last.created_at, last.id)
        return Page(payments, next_token)

    async def _visible(self, caller: Caller, payment: Payment) -> bool:
        """Customers see payments from or to their own accounts; others were let in by role."""
        if not caller.is_customer:
            return True
        if payment.payer_customer_id == caller.customer_id:
            return True
        payee = await self._ledger.get_account(payment.destination_account_id)
        return payee is not None and payee.customer_id == caller.customer_id

    # -- ApprovePayment / RejectPayment ------------------------------------------------

    async def approve(self, caller: Caller, payment_id: uuid.UUID, note: str = "") -> Payment:
        return await self._review(caller, payment_id, ReviewDecision.APPROVE, note)

    async def reject(self, caller: Caller, payment_id: uuid.UUID, note: str = "") -> Payment:
        return await self._review(caller, payment_id, ReviewDecision.REJECT, note)

    async def _review(
        self, caller: Caller, payment_id: uuid.UUID, decision: ReviewDecision, note: str
    ) -> Payment:
        caller.require_review()
        async with self._busy(payment_id):
            payment = await self._load(payment_id)
            payment.decide_review(decision, caller.actor, note, self._clock.now())
            await self._save(payment)
            self._crash("after_review_decision")
            # Ledger down: the decision stands and is carried out by a retry or by recovery.
            return await self._carry_out_review(payment)

    async def _carry_out_review(self, payment: Payment) -> Payment:
        decision = payment.review_decision
        assert decision is not None and payment.status is PaymentStatus.IN_REVIEW
        hold_id = ids.transfer_id(payment.id, ids.HOLD)
        approve = decision is ReviewDecision.APPROVE
        step = ids.POST if approve else ids.VOID
        outcome = await self._ledger.create_transfer(
            TransferRequest(
                id=ids.transfer_id(payment.id, step),
                kind=TransferKind.POST_PENDING if approve else TransferKind.VOID_PENDING,
                pending_id=hold_id,
                metadata=_metadata(payment, step),
            )
        )
        actor = payment.review_actor
        if outcome.accepted:
            if approve:
                payment.transition(
                    PaymentStatus.COMPLETED, ChangeReason.REVIEW_APPROVED, actor, self._clock.now()
                )
            else:
                payment.transition(
                    PaymentStatus.REJECTED, ChangeReason.REVIEW_REJECTED, actor, self._clock.now()
                )
            await self._save(payment)
            return payment

        _check_consistent(payment, outcome)
        # Refused: what became of the hold decides the outcome (the post's id is
        # spent once refused, so a retry answers ID_ALREADY_FAILED; the hold knows why).
        hold = await self._ledger.get_transfer(hold_id)
        state = hold.pending_state if hold is not None else None
        now = self._clock.now()
        if state is HoldState.EXPIRED:
            payment.transition(PaymentStatus.EXPIRED, ChangeReason.HOLD_EXPIRED, SYSTEM_ACTOR, now)
        elif state is HoldState.POSTED:
            payment.transition(PaymentStatus.COMPLETED, ChangeReason.REVIEW_APPROVED, actor, now)
        elif state is HoldState.VOIDED and not approve:
            payment.transition(PaymentStatus.REJECTED, ChangeReason.REVIEW_REJECTED, actor, now)
        elif state is HoldState.PENDING and approve:
            # The hold cannot be posted (an account was frozen or closed meanwhile):
            # release it, so the payer's money is not reserved for nothing.
            await self._release_hold(payment)
            payment.fail(outcome.reason, actor, self._clock.now())
        elif state is HoldState.VOIDED:
            payment.fail(outcome.reason, actor, now)
        else:
            raise LedgerRefused(
                f"the ledger refused to settle the review hold: {outcome.reason}",
                reason=outcome.reason,
            )
        await self._save(payment)
        return payment

    async def _release_hold(self, payment: Payment) -> None:
        void = await self._ledger.create_transfer(
            TransferRequest(
                id=ids.transfer_id(payment.id, ids.VOID),
                kind=TransferKind.VOID_PENDING,
                pending_id=ids.transfer_id(payment.id, ids.HOLD),
                metadata=_metadata(payment, ids.VOID),
            )
        )
        if not void.accepted:
            raise LedgerRefused(
                f"the ledger refused to release the review hold: {void.reason}",
                reason=void.reason,
            )

    # -- RefundPayment -------------------------------------------------------------------

    async def refund(self, caller: Caller, request: RefundRequest) -> Payment:
        caller.require_refund()
        validate_idempotency_key(request.idempotency_key)
        if request.amount is not None:
            validate_amount(request.amount, request.currency or "")
        fingerprint = refund_fingerprint(
            request.payment_id, request.amount, request.currency, request.reason
        )
        scope, key = caller.scope, request.idempotency_key
        replayed = await self._replay(scope, key, fingerprint)
        if replayed is not None:
            return replayed
        async with self._keyed(request.payment_id):
            record = await self._key(scope, key)
            if record is not None:
                record.check(fingerprint)
                if record.response is not None:
                    return _replayed(record.response)
                assert record.refund_id is not None
                payment = await self._load(request.payment_id)
                return await self._finish_refund(payment, record.refund_id, SYSTEM_ACTOR)

            payment = await self._load(request.payment_id)
            if not await self._visible(caller, payment):
                raise _not_found(payment.id)
            if caller.is_customer and not await self._is_payee(caller, payment):
                raise PermissionDenied("only the payee can refund a payment")
            now = self._clock.now()
            refund_id = ids.refund_id(payment.id, scope, key)
            payment.start_refund(
                refund_id, request.amount, request.currency, request.reason, scope, key, now
            )
            async with self._uow() as uow:
                claimed = await uow.payments.add_key(
                    IdempotencyRecord(
                        scope,
                        key,
                        Operation.REFUND_PAYMENT,
                        fingerprint,
                        payment.id,
                        now,
                        refund_id=refund_id,
                    )
                )
                if not claimed:
                    raise WriteConflict(f"refund key {key!r} was claimed concurrently")
                await uow.payments.save(payment)
                await uow.commit()
            self._crash("after_refund_persist")
            return await self._finish_refund(payment, refund_id, SYSTEM_ACTOR)

    async def _is_payee(self, caller: Caller, payment: Payment) -> bool:
        payee = await self._ledger.get_account(payment.destination_account_id)
        return payee is not None and payee.customer_id == caller.customer_id

    async def _finish_refund(self, payment: Payment, refund_id: uuid.UUID, actor: str) -> Payment:
        """Return the money (payee -> payer) with the refund's derived transfer id."""
        refund = payment.refund(refund_id)
        if refund.status is RefundStatus.FAILED:
            raise LedgerRefused(
                f"the refund was refused by the ledger: {refund.failure_reason}",
                reason=refund.failure_reason,
            )
        if refund.status is RefundStatus.COMPLETED:
            return payment
        step = ids.refund_step(refund_id)
        outcome = await self._ledger.create_transfer(
            TransferRequest(
                id=ids.transfer_id(payment.id, step),
                kind=TransferKind.SINGLE_PHASE,
                debit_account_id=payment.destination_account_id,
                credit_account_id=payment.source_account_id,
                amount=refund.amount,
                currency=payment.currency,
                code=TRANSFER_CODE_REFUND,
                metadata=_metadata(payment, step),
            )
        )
        now = self._clock.now()
        response: StoredResponse
        if outcome.accepted:
            payment.complete_refund(refund_id, actor, now)
            response = payment
        else:
            _check_consistent(payment, outcome)
            payment.fail_refund(refund_id, outcome.reason, now)
            response = StoredRefusal(
                outcome.reason, f"the ledger refused the refund: {outcome.reason}"
            )
        async with self._uow() as uow:
            await uow.payments.save(payment)
            await uow.payments.store_response(refund.scope, refund.idempotency_key, response, now)
            await uow.commit()
        if isinstance(response, StoredRefusal):
            raise LedgerRefused(response.message, reason=response.reason)
        return payment

    # -- moving a payment forward ------------------------------------------------------

    async def resume(self, payment_id: uuid.UUID, actor: str) -> bool:
        """Carry a payment left mid-way forward, unless someone is already at it."""
        async with self._locks.try_hold(payment_id) as got:
            if not got:
                return False
            async with self._uow() as uow:
                payment = await uow.payments.get(payment_id)
            if payment is None:
                return False
            await self._advance(payment, actor)
            return True

    async def _advance_quietly(self, payment: Payment, actor: str) -> Payment:
        """`_advance` for CreatePayment: a ledger outage leaves the payment PENDING."""
        try:
            return await self._advance(payment, actor)
        except DependencyUnavailable as exc:
            log.warning("payment %s stays %s for now: %s", payment.id, payment.status, exc)
            return payment

    async def _advance(self, payment: Payment, actor: str) -> Payment:
        """Take every step the payment's stored state says is still to do."""
        if payment.status is PaymentStatus.PENDING:
            await self._settle_new(payment, actor)
        if payment.status is PaymentStatus.IN_REVIEW:
            if payment.review_decision is not None:
                await self._carry_out_review(payment)
            elif payment.hold_expires_at is not None and payment.hold_expires_at <= (
                self._clock.now()
            ):
                await self._notice_expiry(payment, actor)
        for refund in list(payment.refunds):
            if refund.status is RefundStatus.PENDING:
                # A refusal is recorded on the refund and as its key's response.
                with contextlib.suppress(LedgerRefused):
                    await self._finish_refund(payment, refund.id, actor)
        return payment

    async def _settle_new(self, payment: Payment, actor: str) -> None:
        """PENDING -> route -> COMPLETED / IN_REVIEW / DECLINED / FAILED."""
        if payment.route is None:
            # Stored before risk answered: only by a version of this service
            # that asked risk after storing; such a payment is finished here.
            await self._route(payment, actor)
            if payment.status is PaymentStatus.DECLINED:
                await self._save(payment, respond=True)
                return
            await self._save(payment)

        hold = payment.route is Route.HOLD
        step = ids.HOLD if hold else ids.TRANSFER
        outcome = await self._ledger.create_transfer(
            TransferRequest(
                id=ids.transfer_id(payment.id, step),
                kind=TransferKind.PENDING if hold else TransferKind.SINGLE_PHASE,
                debit_account_id=payment.source_account_id,
                credit_account_id=payment.destination_account_id,
                amount=payment.amount,
                currency=payment.currency,
                timeout_seconds=payment.review_timeout_seconds if hold else 0,
                metadata=_metadata(payment, step),
            )
        )
        self._crash("after_transfer")
        now = self._clock.now()
        if outcome.accepted:
            assert outcome.transfer is not None
            if hold:
                payment.hold_expires_at = outcome.transfer.expires_at
                payment.transition(PaymentStatus.IN_REVIEW, payment.review_reason, actor, now)
            else:
                payment.transition(PaymentStatus.COMPLETED, ChangeReason.RISK_APPROVED, actor, now)
        else:
            _check_consistent(payment, outcome)
            payment.fail(outcome.reason, actor, now)
        await self._save(payment, respond=True)

    async def _route(self, payment: Payment, actor: str) -> None:
        """Ask risk and record its route on `payment` (in memory): post, hold or decline."""
        decision = await self._score(payment)
        now = self._clock.now()
        if decision is None:
            payment.record_risk_unavailable(now)
            return
        payment.record_risk(decision.outcome, decision.reasons, decision.decision_id, now)
        if decision.outcome is RiskOutcome.DECLINE:
            payment.transition(PaymentStatus.DECLINED, ChangeReason.PAYMENT_DECLINED, actor, now)

    async def _score(self, payment: Payment) -> RiskDecision | None:
        """Risk's decision, or None when risk cannot answer (the caller holds for review)."""
        try:
            return await self._risk.score(
                RiskRequest(
                    transaction_id=payment.id,
                    customer_id=payment.payer_customer_id,
                    source_account_id=payment.source_account_id,
                    destination_account_id=payment.destination_account_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    client_context=payment.client_context,
                    occurred_at=payment.created_at,
                )
            )
        except DependencyUnavailable as exc:
            log.warning("payment %s: %s; holding it for review", payment.id, exc)
            return None

    async def _notice_expiry(self, payment: Payment, actor: str) -> None:
        hold = await self._ledger.get_transfer(ids.transfer_id(payment.id, ids.HOLD))
        if hold is not None and hold.pending_state is HoldState.EXPIRED:
            payment.transition(
                PaymentStatus.EXPIRED, ChangeReason.HOLD_EXPIRED, actor, self._clock.now()
            )
            await self._save(payment)

    # -- plumbing ----------------------------------------------------------------------

    async def _save(self, payment: Payment, *, respond: bool = False) -> None:
        """Persist the payment; with `respond`, also make it its key's stored answer."""
        async with self._uow() as uow:
            await uow.payments.save(payment)
            if respond:
                await uow.payments.store_response(
                    payment.scope, payment.idempotency_key, payment, self._clock.now()
                )
            await uow.commit()

    async def _load(self, payment_id: uuid.UUID) -> Payment:
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None:
            raise _not_found(payment_id)
        return payment

    async def _key(self, scope: str, key: str) -> IdempotencyRecord | None:
        async with self._uow() as uow:
            return await uow.payments.get_key(scope, key)

    async def _replay(self, scope: str, key: str, fingerprint: bytes) -> Payment | None:
        """The stored answer for this key, if there is one; IDEMPOTENCY_KEY_REUSED if not ours."""
        record = await self._key(scope, key)
        if record is None:
            return None
        record.check(fingerprint)
        return None if record.response is None else _replayed(record.response)

    @asynccontextmanager
    async def _keyed(self, payment_id: uuid.UUID) -> AsyncIterator[None]:
        """The payment's lock for a keyed request: busy past our deadline is KEY_IN_USE."""
        try:
            async with self._locks.hold(payment_id, deadlines.budget(self._wait())):
                yield
        except LockTimeout:
            raise IdempotencyKeyInUse(
                "a request with this idempotency key is still being processed; "
                "retry with the same key to get its result",
                field="idempotency_key",
            ) from None

    @asynccontextmanager
    async def _busy(self, payment_id: uuid.UUID) -> AsyncIterator[None]:
        try:
            async with self._locks.hold(payment_id, deadlines.budget(self._wait())):
                yield
        except LockTimeout:
            raise WriteConflict(f"payment {payment_id} is busy with another request") from None

    def _wait(self) -> float:
        return self._settings.default_wait_seconds


def _replayed(response: StoredResponse) -> Payment:
    if isinstance(response, StoredRefusal):
        raise LedgerRefused(response.message, reason=response.reason)
    return response


def _not_found(payment_id: uuid.UUID) -> PaymentNotFound:
    # One message whether it does not exist or is not the caller's: no hint either way.
    return PaymentNotFound(f"payment {payment_id} does not exist", field="payment_id")


def _metadata(payment: Payment, step: str) -> tuple[tuple[str, str], ...]:
    return (("payment_id", str(payment.id)), ("step", step))


def _check_consistent(payment: Payment, outcome: TransferOutcome) -> None:
    if outcome.reason == "EXISTS_WITH_DIFFERENT_FIELDS":
        log.error(
            "payment %s: the ledger holds a derived transfer id with other fields", payment.id
        )
        raise LedgerInconsistency(
            f"payment {payment.id}: a derived transfer id exists with other fields"
        )
