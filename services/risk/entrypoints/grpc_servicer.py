"""The RiskService gRPC servicer: protobuf in, use case, protobuf out.

No rules here: parsing lives in convert.py, decisions in the domain, and
errors are mapped by the mesh's interceptor through errors.py. The caller's
remaining deadline is handed to the use case, which keeps the state lookup
within it so that a slow Redis still leaves time for a fallback answer.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from bankmesh.risk.v1 import risk_service_pb2 as svc
from bankmesh.risk.v1 import risk_service_pb2_grpc as svc_grpc
from services.risk.service_layer.ports import Clock
from services.risk.service_layer.scoring import RiskScorer

from . import convert

Context = grpc.aio.ServicerContext[Any, Any]


class RiskServicer(svc_grpc.RiskServiceServicer):
    def __init__(self, scorer: RiskScorer, clock: Clock) -> None:
        self._scorer = scorer
        self._clock = clock

    async def ScoreTransaction(
        self, request: svc.ScoreTransactionRequest, context: Context
    ) -> svc.ScoreTransactionResponse:
        txn = convert.transaction(request, self._clock.now())
        decision = await self._scorer.score(txn, deadline=context.time_remaining())
        return convert.response(decision)
