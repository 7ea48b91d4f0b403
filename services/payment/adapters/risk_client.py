"""`RiskPort` over gRPC: RiskService.ScoreTransaction on a grpc.aio channel.

The transaction id is the payment id, so scoring a payment again after a
crash returns the decision risk already stored for it. Any failure (risk
down, slow, or answering without a decision) raises `DependencyUnavailable`
and the use case applies the risk-down policy: hold for review, never post
unscored money.

Risk gets at most `max_seconds`, and never the time the ledger still needs
after it: the caller's remaining time minus `ledger_reserve` (a payment that
risk could not score in time can still be held for review in the same call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from bankmesh.common.v1 import context_pb2, money_pb2
from bankmesh.risk.v1 import risk_service_pb2 as risk_pb
from bankmesh.risk.v1 import risk_service_pb2_grpc as risk_grpc
from services.payment.domain.model import ClientContext, RiskOutcome
from services.payment.service_layer import deadlines
from services.payment.service_layer.ports import DependencyUnavailable, RiskDecision, RiskRequest

from .ledger_client import ChannelSource

if TYPE_CHECKING:
    from bankmesh.risk.v1.risk_service_pb2_grpc import RiskServiceAsyncStub

SERVICE = "risk"
_CHANNELS = frozenset(context_pb2.Channel.keys())

_OUTCOMES = {
    risk_pb.DECISION_APPROVE: RiskOutcome.APPROVE,
    risk_pb.DECISION_REVIEW: RiskOutcome.REVIEW,
    risk_pb.DECISION_DECLINE: RiskOutcome.DECLINE,
}


class GrpcRisk:
    def __init__(
        self, channel: ChannelSource, *, max_seconds: float = 2.0, ledger_reserve: float = 0.5
    ) -> None:
        self._source = channel
        self._max_seconds = max_seconds
        self._ledger_reserve = ledger_reserve

    def _stub(self) -> RiskServiceAsyncStub:
        try:
            channel = self._source if isinstance(self._source, grpc.aio.Channel) else self._source()
        except LookupError as exc:
            raise DependencyUnavailable(SERVICE, str(exc)) from exc
        return risk_grpc.RiskServiceStub(channel)

    async def score(self, request: RiskRequest) -> RiskDecision:
        left = deadlines.remaining()
        timeout = self._max_seconds
        if left is not None:
            timeout = min(timeout, left - deadlines.MARGIN_SECONDS - self._ledger_reserve)
        if timeout <= 0:
            raise DependencyUnavailable(SERVICE, "no time left to ask before the caller's deadline")
        occurred = Timestamp()
        occurred.FromDatetime(request.occurred_at)
        message = risk_pb.ScoreTransactionRequest(
            transaction_id=str(request.transaction_id),
            customer_id=request.customer_id,
            source_account_id=str(request.source_account_id),
            destination_account_id=str(request.destination_account_id),
            amount=money_pb2.Money(minor_units=request.amount, currency_code=request.currency),
            client_context=client_context_pb(request.client_context),
            occur_time=occurred,
        )
        stub = self._stub()
        try:
            response = await stub.ScoreTransaction(message, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise DependencyUnavailable(SERVICE, exc.code().name) from exc
        outcome = _OUTCOMES.get(response.decision)
        if outcome is None:
            raise DependencyUnavailable(SERVICE, "it answered without a decision")
        return RiskDecision(
            outcome=outcome,
            reasons=tuple(response.reason_codes),
            decision_id=response.decision_id,
            fallback=response.fallback,
        )


def client_context_pb(c: ClientContext) -> context_pb2.ClientContext:
    channel = f"CHANNEL_{c.channel}"
    message = context_pb2.ClientContext(
        channel=channel if channel in _CHANNELS else "CHANNEL_UNSPECIFIED",
        device_id=c.device_id,
        ip_address=c.ip_address,
        user_agent=c.user_agent,
    )
    if c.latitude is not None and c.longitude is not None:
        message.geo.CopyFrom(context_pb2.GeoPoint(latitude=c.latitude, longitude=c.longitude))
    return message
