"""Protobuf <-> domain values for the risk service. No rules live here.

Requests are parsed strictly, before anything reaches the use case: a missing
id, a non-positive amount, an unknown currency or an impossible coordinate is
an InvalidRequest naming the field. A request without `occur_time` is scored
at the service's clock (and marked so, for idempotent retries).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bankmesh.common.v1 import context_pb2
from bankmesh.risk.v1 import risk_service_pb2 as svc
from services.common.money import is_currency
from services.risk.domain.errors import InvalidRequest, Reason
from services.risk.domain.model import Decision, GeoPoint, StoredDecision, Transaction

MAX_ID_LENGTH = 128
MAX_CLOCK_SKEW = timedelta(minutes=5)

_CHANNELS = {
    context_pb2.CHANNEL_UNSPECIFIED: "UNSPECIFIED",
    context_pb2.CHANNEL_MOBILE: "MOBILE",
    context_pb2.CHANNEL_WEB: "WEB",
    context_pb2.CHANNEL_BRANCH: "BRANCH",
    context_pb2.CHANNEL_API: "API",
}
_DECISIONS = {
    Decision.APPROVE: svc.DECISION_APPROVE,
    Decision.REVIEW: svc.DECISION_REVIEW,
    Decision.DECLINE: svc.DECISION_DECLINE,
}


def _identifier(value: str, field: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise InvalidRequest(f"{field} is required", reason=Reason.INVALID_ID, field=field)
        return ""
    if len(value) > MAX_ID_LENGTH or not value.isprintable() or value != value.strip():
        raise InvalidRequest(
            f"{field} must be at most {MAX_ID_LENGTH} printable characters without "
            "surrounding spaces",
            reason=Reason.INVALID_ID,
            field=field,
        )
    return value


def transaction(request: svc.ScoreTransactionRequest, now: datetime) -> Transaction:
    transaction_id = _identifier(request.transaction_id, "transaction_id")
    customer_id = _identifier(request.customer_id, "customer_id")
    source = _identifier(request.source_account_id, "source_account_id")
    destination = _identifier(request.destination_account_id, "destination_account_id")
    if source == destination:
        raise InvalidRequest(
            "source and destination accounts must differ",
            reason=Reason.ACCOUNTS_MUST_BE_DIFFERENT,
            field="destination_account_id",
        )
    if not request.HasField("amount"):
        raise InvalidRequest("amount is required", reason=Reason.INVALID_AMOUNT, field="amount")
    if request.amount.minor_units <= 0:
        raise InvalidRequest(
            "amount must be a positive whole number of minor units",
            reason=Reason.INVALID_AMOUNT,
            field="amount.minor_units",
        )
    currency = request.amount.currency_code
    if not is_currency(currency):
        raise InvalidRequest(
            "the currency must be an ISO 4217 code such as 'EUR'",
            reason=Reason.INVALID_CURRENCY,
            field="amount.currency_code",
        )

    context = request.client_context
    channel = _CHANNELS.get(context.channel)
    if channel is None:
        raise InvalidRequest(
            "client_context.channel is not a known Channel", field="client_context.channel"
        )
    geo = None
    if context.HasField("geo"):
        lat, lon = context.geo.latitude, context.geo.longitude
        # NaN fails every comparison, so it is refused here too.
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidRequest(
                "latitude must be within [-90, 90] and longitude within [-180, 180]",
                field="client_context.geo",
            )
        geo = GeoPoint(lat, lon)

    given = request.HasField("occur_time")
    occurred_at = request.occur_time.ToDatetime(tzinfo=now.tzinfo) if given else now
    if occurred_at > now + MAX_CLOCK_SKEW:
        raise InvalidRequest("occur_time is more than 5 minutes in the future", field="occur_time")
    return Transaction(
        transaction_id=transaction_id,
        customer_id=customer_id,
        source_account_id=source,
        destination_account_id=destination,
        amount=request.amount.minor_units,
        currency=currency,
        occurred_at=occurred_at,
        channel=channel,
        device_id=_identifier(context.device_id, "client_context.device_id", required=False),
        ip_address=context.ip_address[:64],
        geo=geo,
        occurred_at_given=given,
    )


def response(decision: StoredDecision) -> svc.ScoreTransactionResponse:
    return svc.ScoreTransactionResponse(
        decision_id=decision.decision_id,
        score=decision.score,
        decision=_DECISIONS[decision.decision],
        reason_codes=list(decision.reason_codes),
        ruleset_version=decision.ruleset_version,
        model_version=decision.model_version,
        fallback=decision.fallback,
    )
