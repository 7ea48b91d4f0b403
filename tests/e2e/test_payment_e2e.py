"""A payment through the whole mesh: payment -> risk -> account, all over mutual TLS."""

from __future__ import annotations

import uuid

import grpc
import grpc.aio
import pytest
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bankmesh.common.v1 import context_pb2, money_pb2
from bankmesh.payment.v1 import payment_pb2, payment_service_pb2_grpc
from bankmesh.payment.v1 import payment_service_pb2 as pay
from mesh import context
from mesh.context import EndUser
from mesh.errors import error_info
from services.account.domain.model import AccountType, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount
from tests.e2e.conftest import STOLEN_DEVICE, Mesh

pytestmark = pytest.mark.integration


async def funded_pair(ledger: Ledger, cents: int = 100_00) -> tuple[str, str]:
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    alice, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "alice"))
    bob, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "bob"))
    await ledger.create_transfer(
        NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, alice.id, cents, "EUR")
    )
    return str(alice.id), str(bob.id)


def payment_request(
    source: str, destination: str, cents: int, device: str = "device-alice-phone"
) -> pay.CreatePaymentRequest:
    return pay.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        source_account_id=source,
        destination_account_id=destination,
        amount=money_pb2.Money(minor_units=cents, currency_code="EUR"),
        reference="dinner",
        client_context=context_pb2.ClientContext(
            channel=context_pb2.CHANNEL_MOBILE, device_id=device, ip_address="192.0.2.10"
        ),
    )


async def test_an_ordinary_payment_completes_and_moves_the_money_once(mesh: Mesh) -> None:
    """Alice pays Bob 25.50: COMPLETED, risk APPROVE, both balances moved exactly."""
    alice, bob = await funded_pair(mesh.ledger)
    response = await mesh.payment.CreatePayment(payment_request(alice, bob, 25_50))
    payment = response.payment
    assert payment.status == payment_pb2.PAYMENT_STATUS_COMPLETED
    assert payment.risk_outcome == payment_pb2.RISK_OUTCOME_APPROVE
    assert (await mesh.ledger.get_account(uuid.UUID(alice))).balances.posted == 74_50
    assert (await mesh.ledger.get_account(uuid.UUID(bob))).balances.posted == 25_50


async def test_a_payment_from_a_stolen_device_is_declined_with_reasons(mesh: Mesh) -> None:
    """A deny-listed device: DECLINED with the reason code, and no money moves."""
    alice, bob = await funded_pair(mesh.ledger)
    request = payment_request(alice, bob, 90_00, device=STOLEN_DEVICE)
    payment = (await mesh.payment.CreatePayment(request)).payment
    assert payment.status == payment_pb2.PAYMENT_STATUS_DECLINED
    assert "DENY_LIST" in payment.risk_reasons
    assert (await mesh.ledger.get_account(uuid.UUID(alice))).balances.posted == 100_00


async def test_one_payment_is_one_trace_across_payment_risk_and_account(
    mesh: Mesh, spans: InMemorySpanExporter
) -> None:
    """The server spans of all three services share the trace id of the payment call."""
    alice, bob = await funded_pair(mesh.ledger)
    spans.clear()
    request_id = f"trace-{uuid.uuid4().hex[:8]}"
    await mesh.payment.CreatePayment(
        payment_request(alice, bob, 10_00), metadata=(("x-request-id", request_id),)
    )
    server_spans = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    root = next(s for s in server_spans if s.name.endswith("PaymentService/CreatePayment"))
    assert root.context is not None
    trace_id = root.context.trace_id
    services = {
        s.attributes.get("bankmesh.service")
        for s in server_spans
        if s.context is not None and s.context.trace_id == trace_id and s.attributes
    }
    assert {"payment", "risk", "account"} <= services


async def test_a_customer_cannot_pay_from_someone_elses_account(mesh: Mesh) -> None:
    """Through the edge, Bob signed in cannot spend from Alice's account: NOT_FOUND."""
    alice, bob = await funded_pair(mesh.ledger)
    token = context.end_user.set(EndUser("u-bob", "bob", frozenset({"customer"})))
    try:
        async with mesh.pki.channel("edge", "payment", mesh.ports["payment"]) as channel:
            stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreatePayment(payment_request(alice, bob, 1_00))
    finally:
        context.end_user.reset(token)
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    info = error_info(status) if status else None
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert info is not None and info.reason == "ACCOUNT_NOT_FOUND"
    assert (await mesh.ledger.get_account(uuid.UUID(alice))).balances.posted == 100_00


async def test_a_customer_signed_in_at_the_edge_pays_from_their_own_account(mesh: Mesh) -> None:
    """Alice through the edge: COMPLETED, money moved; payment moves it as itself on the ledger."""
    alice, bob = await funded_pair(mesh.ledger)
    token = context.end_user.set(EndUser("u-alice", "alice", frozenset({"customer"})))
    try:
        async with mesh.pki.channel("edge", "payment", mesh.ports["payment"]) as channel:
            stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
            response = await stub.CreatePayment(payment_request(alice, bob, 12_00))
    finally:
        context.end_user.reset(token)
    assert response.payment.status == payment_pb2.PAYMENT_STATUS_COMPLETED
    assert (await mesh.ledger.get_account(uuid.UUID(bob))).balances.posted == 12_00
