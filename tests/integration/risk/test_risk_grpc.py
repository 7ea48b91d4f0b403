"""The risk service over real gRPC: a grpc.aio server on port 0 and the generated stub.

Also measures ScoreTransaction's latency over 1000 sequential calls against
real PostgreSQL and Redis and prints p50/p99 (no assertion on time: machines
differ; the numbers are for docs/risk.md).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from bankmesh.common.v1 import context_pb2, money_pb2
from bankmesh.risk.v1 import risk_service_pb2 as svc
from bankmesh.risk.v1 import risk_service_pb2_grpc as svc_grpc
from mesh.errors import ERROR_DOMAIN, error_info
from services.risk.adapters.ruleset_file import RiskConfig
from services.risk.app import SERVICE_NAME, build_risk_server, create_redis, redis_state
from services.risk.service_layer.scoring import RiskScorer

from .conftest import ScorerFactory

if TYPE_CHECKING:
    from bankmesh.risk.v1.risk_service_pb2_grpc import RiskServiceAsyncStub as Stub

pytestmark = pytest.mark.integration


async def serve(scorer: RiskScorer) -> AsyncIterator[tuple[Stub, grpc.aio.Channel]]:
    server, port, health = build_risk_server(scorer)
    await server.start()
    await health.set_serving(True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield svc_grpc.RiskServiceStub(channel), channel
    await server.stop(grace=None)


@pytest.fixture
async def wire(scorer: RiskScorer) -> AsyncIterator[tuple[Stub, grpc.aio.Channel]]:
    async for pair in serve(scorer):
        yield pair


@pytest.fixture
def stub(wire: tuple[Stub, grpc.aio.Channel]) -> Stub:
    return wire[0]


def request(customer: str = "", /, **changes: object) -> svc.ScoreTransactionRequest:
    customer = customer or f"c-{uuid.uuid4().hex[:8]}"
    occur = Timestamp()
    occur.GetCurrentTime()
    fields: dict[str, object] = {
        "transaction_id": str(uuid.uuid4()),
        "customer_id": customer,
        "source_account_id": f"acc-{customer}",
        "destination_account_id": f"acc-{customer}-shop",
        "amount": money_pb2.Money(minor_units=42_50, currency_code="EUR"),
        "client_context": context_pb2.ClientContext(
            channel=context_pb2.CHANNEL_MOBILE,
            device_id=f"{customer}-phone",
            ip_address="192.0.2.10",
            geo=context_pb2.GeoPoint(latitude=48.85, longitude=2.35),
        ),
        "occur_time": occur,
        **changes,
    }
    return svc.ScoreTransactionRequest(**fields)  # type: ignore[arg-type]


async def refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_info(status)
    assert info is not None and info.domain == ERROR_DOMAIN
    return caught.value.code(), info.reason, dict(info.metadata)


async def test_score_transaction_answers_a_complete_decision(stub: Stub) -> None:
    """Score, decision, versions and a decision id come back over the wire."""
    response = await stub.ScoreTransaction(request())
    assert 0.0 <= response.score <= 1.0
    assert response.decision == svc.DECISION_APPROVE
    assert response.ruleset_version == "default-2025.2"
    assert response.model_version.startswith("hgb-")
    assert str(uuid.UUID(response.decision_id)) == response.decision_id
    assert not response.fallback


async def test_the_same_request_twice_returns_the_stored_decision(stub: Stub) -> None:
    """Idempotent by transaction id: the retry gets the same decision id."""
    r = request()
    first = await stub.ScoreTransaction(r)
    assert await stub.ScoreTransaction(r) == first


async def test_reusing_a_transaction_id_for_another_payment_is_already_exists(stub: Stub) -> None:
    """EXISTS_WITH_DIFFERENT_FIELDS names transaction_id."""
    r = request()
    await stub.ScoreTransaction(r)
    r.amount.minor_units += 1
    code, reason, metadata = await refusal(stub.ScoreTransaction(r))
    assert (code, reason, metadata) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EXISTS_WITH_DIFFERENT_FIELDS",
        {"field": "transaction_id"},
    )


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"transaction_id": ""}, "INVALID_ID", "transaction_id"),
        ({"customer_id": ""}, "INVALID_ID", "customer_id"),
        ({"amount": money_pb2.Money(minor_units=0, currency_code="EUR")}, "INVALID_AMOUNT",
         "amount.minor_units"),
        ({"amount": money_pb2.Money(minor_units=5, currency_code="EURO")}, "INVALID_CURRENCY",
         "amount.currency_code"),
        ({"destination_account_id": "acc-same", "source_account_id": "acc-same"},
         "ACCOUNTS_MUST_BE_DIFFERENT", "destination_account_id"),
        ({"client_context": context_pb2.ClientContext(geo=context_pb2.GeoPoint(latitude=91))},
         "INVALID_ARGUMENT", "client_context.geo"),
    ],
)  # fmt: skip
async def test_a_malformed_request_is_invalid_argument_naming_the_field(
    stub: Stub, changes: dict[str, object], reason: str, field: str
) -> None:
    """Each refusal carries its ErrorReason and the offending field in ErrorInfo."""
    r = request("", **changes)
    if "amount" not in changes and not r.amount.currency_code:
        r.ClearField("amount")
    code, got_reason, metadata = await refusal(stub.ScoreTransaction(r))
    assert (code, got_reason, metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        {"field": field},
    )


async def test_health_reports_serving(wire: tuple[Stub, grpc.aio.Channel]) -> None:
    """The standard health service answers for the RiskService name."""
    health = health_pb2_grpc.HealthStub(wire[1])
    response = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_with_redis_down_the_wire_answer_is_a_fallback_within_the_deadline(
    make_scorer: ScorerFactory, risk_config: RiskConfig
) -> None:
    """Redis on a closed port: the call, with a 300 ms deadline, succeeds with fallback=true."""
    client = create_redis("redis://127.0.0.1:1/0")
    scorer = make_scorer(state=redis_state(client, risk_config, "test:down:"), state_timeout=0.025)
    async for stub, _ in serve(scorer):
        small = await stub.ScoreTransaction(request(), timeout=0.3)
        large = await stub.ScoreTransaction(
            request(amount=money_pb2.Money(minor_units=5_000_00, currency_code="EUR")),
            timeout=0.3,
        )
        assert small.fallback and small.decision == svc.DECISION_APPROVE
        assert large.fallback and large.decision == svc.DECISION_REVIEW
        assert "FALLBACK_AMOUNT_LIMIT" in large.reason_codes
    await client.aclose()


async def test_latency_of_a_thousand_sequential_scorings(stub: Stub) -> None:
    """Prints p50/p99 of ScoreTransaction over 1000 calls (real gRPC, PostgreSQL, Redis)."""
    customers = [f"lat-{uuid.uuid4().hex[:6]}-{i}" for i in range(50)]
    for customer in customers[:5]:  # warm up connections and code paths
        await stub.ScoreTransaction(request(customer))
    timings = []
    fallbacks = 0
    for i in range(1000):
        r = request(customers[i % len(customers)])
        started = time.perf_counter()
        response = await stub.ScoreTransaction(r)
        timings.append(time.perf_counter() - started)
        fallbacks += response.fallback
    timings.sort()
    p50 = statistics.median(timings) * 1000
    p99 = timings[int(0.99 * len(timings)) - 1] * 1000
    print(
        f"\nScoreTransaction latency over {len(timings)} sequential calls: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {timings[-1] * 1000:.2f} ms, "
        f"fallbacks {fallbacks}"
    )
    assert fallbacks == 0
