"""Protobuf <-> domain values for the payment service, and who is calling. No rules live here.

Inputs are parsed strictly: a malformed UUID is INVALID_ID naming the field,
a missing amount INVALID_AMOUNT, before anything reaches the use cases.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from bankmesh.common.v1 import context_pb2, money_pb2
from bankmesh.payment.v1 import payment_pb2 as pb
from bankmesh.payment.v1 import payment_service_pb2 as svc
from mesh import context as mesh_context
from services.payment.domain.access import Caller
from services.payment.domain.errors import InvalidRequest, Reason
from services.payment.domain.model import (
    ClientContext,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RiskOutcome,
)
from services.payment.service_layer.payments import RefundRequest

_STATUSES_PB = {
    PaymentStatus.PENDING: pb.PAYMENT_STATUS_PENDING,
    PaymentStatus.COMPLETED: pb.PAYMENT_STATUS_COMPLETED,
    PaymentStatus.IN_REVIEW: pb.PAYMENT_STATUS_IN_REVIEW,
    PaymentStatus.DECLINED: pb.PAYMENT_STATUS_DECLINED,
    PaymentStatus.FAILED: pb.PAYMENT_STATUS_FAILED,
    PaymentStatus.REJECTED: pb.PAYMENT_STATUS_REJECTED,
    PaymentStatus.EXPIRED: pb.PAYMENT_STATUS_EXPIRED,
    PaymentStatus.PARTIALLY_REFUNDED: pb.PAYMENT_STATUS_PARTIALLY_REFUNDED,
    PaymentStatus.REFUNDED: pb.PAYMENT_STATUS_REFUNDED,
}
_OUTCOMES_PB = {
    RiskOutcome.APPROVE: pb.RISK_OUTCOME_APPROVE,
    RiskOutcome.REVIEW: pb.RISK_OUTCOME_REVIEW,
    RiskOutcome.DECLINE: pb.RISK_OUTCOME_DECLINE,
}


# -- the caller ----------------------------------------------------------------------


def current_caller() -> Caller:
    """The end user the call is made for, else the calling service (mesh.context)."""
    user = mesh_context.end_user.get()
    if user is None:
        return Caller.service(mesh_context.peer_service.get())
    return Caller.end_user(
        user.user_id,
        customer_id=user.customer_id,
        roles=user.roles,
        is_customer=user.is_customer,
    )


# -- inputs ------------------------------------------------------------------------------


def required_uuid(value: str, field: str) -> uuid.UUID:
    if not value:
        raise InvalidRequest(f"{field} is required", reason=Reason.INVALID_ID, field=field)
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise InvalidRequest(
            f"{field} must be a UUID such as 7c9e6679-7425-40de-944b-e07fc1f90ae7",
            reason=Reason.INVALID_ID,
            field=field,
        )
    return parsed


def payment_request(r: svc.CreatePaymentRequest) -> PaymentRequest:
    if not r.HasField("amount"):
        raise InvalidRequest(
            "amount is required", reason=Reason.INVALID_AMOUNT, field="amount.minor_units"
        )
    return PaymentRequest(
        idempotency_key=r.idempotency_key,
        source_account_id=required_uuid(r.source_account_id, "source_account_id"),
        destination_account_id=required_uuid(r.destination_account_id, "destination_account_id"),
        amount=r.amount.minor_units,
        currency=r.amount.currency_code,
        reference=r.reference,
        description=r.description,
        client_context=client_context(r.client_context),
    )


def refund_request(r: svc.RefundPaymentRequest) -> RefundRequest:
    has_amount = r.HasField("amount")
    return RefundRequest(
        payment_id=required_uuid(r.payment_id, "payment_id"),
        idempotency_key=r.idempotency_key,
        amount=r.amount.minor_units if has_amount else None,
        currency=r.amount.currency_code if has_amount else None,
        reason=r.reason,
    )


def client_context(c: context_pb2.ClientContext) -> ClientContext:
    channel = context_pb2.Channel.Name(c.channel).removeprefix("CHANNEL_")
    return ClientContext(
        channel="" if channel == "UNSPECIFIED" else channel,
        device_id=c.device_id,
        ip_address=c.ip_address,
        latitude=c.geo.latitude if c.HasField("geo") else None,
        longitude=c.geo.longitude if c.HasField("geo") else None,
        user_agent=c.user_agent,
    )


# -- outputs -----------------------------------------------------------------------------


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def money(minor_units: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor_units, currency_code=currency)


def _client_context_pb(c: ClientContext) -> context_pb2.ClientContext:
    channel = f"CHANNEL_{c.channel}" if c.channel else "CHANNEL_UNSPECIFIED"
    message = context_pb2.ClientContext(
        channel=channel, device_id=c.device_id, ip_address=c.ip_address, user_agent=c.user_agent
    )
    if c.latitude is not None and c.longitude is not None:
        message.geo.CopyFrom(context_pb2.GeoPoint(latitude=c.latitude, longitude=c.longitude))
    return message


def payment(p: Payment) -> pb.Payment:
    return pb.Payment(
        payment_id=str(p.id),
        source_account_id=str(p.source_account_id),
        destination_account_id=str(p.destination_account_id),
        amount=money(p.amount, p.currency),
        status=_STATUSES_PB[p.status],
        reference=p.reference,
        description=p.description,
        risk_outcome=(
            _OUTCOMES_PB[p.risk_outcome] if p.risk_outcome else pb.RISK_OUTCOME_UNSPECIFIED
        ),
        risk_reasons=list(p.risk_reasons),
        failure_reason=p.failure_reason,
        refunded_amount=money(p.refunded_amount, p.currency),
        refunds=[
            pb.Refund(
                refund_id=str(r.id),
                amount=money(r.amount, p.currency),
                reason=r.reason,
                create_time=_timestamp(r.created_at),
            )
            for r in p.completed_refunds
        ],
        history=[
            pb.StatusChange(
                from_status=(
                    _STATUSES_PB[h.from_status] if h.from_status else pb.PAYMENT_STATUS_UNSPECIFIED
                ),
                to_status=_STATUSES_PB[h.to_status],
                reason=h.reason,
                actor=h.actor,
                change_time=_timestamp(h.at),
            )
            for h in p.history
        ],
        client_context=_client_context_pb(p.client_context),
        create_time=_timestamp(p.created_at),
        update_time=_timestamp(p.updated_at),
    )
