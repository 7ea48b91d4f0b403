"""What one request of each scenario is, run inside a load-generator process.

A workload is a small picklable description (addresses, credential paths,
account ids) sent to every client process. There ``start`` opens its
connections on that process's event loop, ``call`` makes one request and
returns its outcome, and ``stop`` closes what ``start`` opened.

``call`` returns labels: the first is the outcome (``OK``, a payment's
status, a risk decision) and the rest are tags counted beside it (a
payment's risk reasons, say). A failed request raises: ``grpc.aio.AioRpcError``
is counted under its status code, anything else under its type.

Every gRPC workload dials like the operator CLI does: mutual TLS with the
operator's certificate, the callee's certificate name expected
(``<service>.bankmesh.local``), round-robin over its replicas. Each of a
process's connections is a channel of its own with a local subchannel pool,
so they really are separate HTTP/2 connections rather than one shared.
"""

from __future__ import annotations

import json
import random
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import httpx

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import context_pb2, errors_pb2, money_pb2
from bankmesh.payment.v1 import payment_pb2, payment_service_pb2, payment_service_pb2_grpc
from bankmesh.risk.v1 import risk_service_pb2, risk_service_pb2_grpc
from bench import echo
from mesh.client import target_for
from mesh.tls import channel_options

if TYPE_CHECKING:
    from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceAsyncStub
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub
    from bankmesh.risk.v1.risk_service_pb2_grpc import RiskServiceAsyncStub

CURRENCY = "EUR"


def _same(data: bytes) -> bytes:
    return data


class Workload:
    """One kind of request; subclasses are dataclasses so they pickle to the client processes."""

    async def start(self, connections: int) -> None:
        raise NotImplementedError

    async def call(self, rng: random.Random) -> Sequence[str]:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class GrpcTarget:
    """Where a service listens and the operator's credential files to reach it with."""

    service: str
    addresses: tuple[str, ...]
    ca: str
    cert: str
    key: str

    def open(self) -> grpc.aio.Channel:
        with open(self.ca, "rb") as ca, open(self.cert, "rb") as cert, open(self.key, "rb") as key:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca.read(), private_key=key.read(), certificate_chain=cert.read()
            )
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
            ("grpc.use_local_subchannel_pool", 1),
            *channel_options(self.service),
        ]
        return grpc.aio.secure_channel(target_for(self.addresses), credentials, options=options)


@dataclass
class GrpcWorkload(Workload):
    target: GrpcTarget
    timeout: float = 10.0
    _channels: list[grpc.aio.Channel] = field(default_factory=list, init=False, repr=False)
    _next: int = field(default=0, init=False, repr=False)

    async def start(self, connections: int) -> None:
        self._channels = [self.target.open() for _ in range(max(1, connections))]
        for channel in self._channels:
            await channel.channel_ready()
        self.bind(self._channels)

    def bind(self, channels: list[grpc.aio.Channel]) -> None:
        """Make the stubs for ``channels``."""

    def pick(self) -> int:
        """The index of the connection for the next call: each in turn."""
        self._next = (self._next + 1) % len(self._channels)
        return self._next

    async def stop(self) -> None:
        for channel in self._channels:
            await channel.close(grace=None)
        self._channels = []


@dataclass
class EchoWorkload(GrpcWorkload):
    """The baseline: bytes there and back, about the size of a transfer request."""

    payload_bytes: int = 160
    _calls: list[Any] = field(default_factory=list, init=False, repr=False)

    def bind(self, channels: list[grpc.aio.Channel]) -> None:
        self._calls = [
            channel.unary_unary(echo.METHOD, request_serializer=_same, response_deserializer=_same)
            for channel in channels
        ]

    async def call(self, rng: random.Random) -> Sequence[str]:
        payload = rng.randbytes(self.payload_bytes)
        answer = await self._calls[self.pick()](payload, timeout=self.timeout)
        if answer != payload:
            raise ValueError("the echo server answered with other bytes")
        return ("OK",)


@dataclass
class TransferWorkload(GrpcWorkload):
    """AccountService/CreateTransfer between random accounts, or into one hot account.

    With ``batch`` above 1, each request is a CreateTransfers of that many
    independent transfers: how a client that batches (as TigerBeetle's clients
    do) drives the ledger, one round trip and one group commit for many
    transfers.
    """

    accounts: tuple[str, ...] = ()
    # Set: every transfer credits this account (the hot-account scenario).
    hot_account: str | None = None
    batch: int = 1
    _stubs: list[AccountServiceAsyncStub] = field(default_factory=list, init=False, repr=False)

    def bind(self, channels: list[grpc.aio.Channel]) -> None:
        self._stubs = [account_service_pb2_grpc.AccountServiceStub(c) for c in channels]

    def _transfer(self, rng: random.Random) -> account_pb2.NewTransfer:
        debit = rng.randrange(len(self.accounts))
        if self.hot_account is not None:
            credit_id = self.hot_account
        else:
            credit_id = self.accounts[
                (debit + rng.randrange(1, len(self.accounts))) % len(self.accounts)
            ]
        return account_pb2.NewTransfer(
            transfer_id=str(uuid.uuid4()),
            debit_account_id=self.accounts[debit],
            credit_account_id=credit_id,
            amount=money_pb2.Money(minor_units=rng.randint(1, 1_000), currency_code=CURRENCY),
            kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
        )

    async def call(self, rng: random.Random) -> Sequence[str]:
        stub = self._stubs[self.pick()]
        if self.batch == 1:
            request = account_service_pb2.CreateTransferRequest(transfer=self._transfer(rng))
            response = await stub.CreateTransfer(request, timeout=self.timeout)
            return ("EXISTS" if response.already_existed else "CREATED",)
        batch = account_service_pb2.CreateTransfersRequest(
            transfers=[self._transfer(rng) for _ in range(self.batch)]
        )
        results = (await stub.CreateTransfers(batch, timeout=self.timeout)).results
        refused = [errors_pb2.ErrorReason.Name(r.reason) for r in results if r.outcome != _CREATED]
        # One outcome per request: all created, or the first refusal's reason.
        return (refused[0] if refused else "CREATED",)


_CREATED = account_service_pb2.CreateTransferResult.OUTCOME_CREATED


# Each customer pays a few regular payees, from their own phone at home: the
# everyday shape risk should approve. Offsets rather than a table keep the
# description small enough to send to every client process.
PAYEE_OFFSETS = (1, 2, 3, 5, 8)


def customer_context(index: int) -> context_pb2.ClientContext:
    """Customer ``index``'s one phone, address and home position, the same every time."""
    return context_pb2.ClientContext(
        channel=context_pb2.CHANNEL_MOBILE,
        device_id=f"bench-device-{index}",
        ip_address=f"198.51.100.{index % 250 + 1}",
        geo=context_pb2.GeoPoint(
            latitude=48.0 + (index % 400) * 0.01, longitude=11.0 + (index // 400 % 400) * 0.01
        ),
        user_agent="bankmesh-bench/1 (mobile)",
    )


def payee(source: int, rng: random.Random, accounts: int) -> int:
    return (source + rng.choice(PAYEE_OFFSETS)) % accounts


def everyday_amount(rng: random.Random) -> int:
    """EUR 5.00 to 80.00, in cents."""
    return rng.randint(500, 8_000)


@dataclass
class PaymentWorkload(GrpcWorkload):
    """PaymentService/CreatePayment end to end: payment -> risk -> account."""

    accounts: tuple[str, ...] = ()
    timeout: float = 30.0
    _stubs: list[PaymentServiceAsyncStub] = field(default_factory=list, init=False, repr=False)

    def bind(self, channels: list[grpc.aio.Channel]) -> None:
        self._stubs = [payment_service_pb2_grpc.PaymentServiceStub(c) for c in channels]

    async def call(self, rng: random.Random) -> Sequence[str]:
        request = payment_request(self.accounts, rng)
        response = await self._stubs[self.pick()].CreatePayment(request, timeout=self.timeout)
        return payment_labels(response.payment)


def payment_request(
    accounts: Sequence[str], rng: random.Random
) -> payment_service_pb2.CreatePaymentRequest:
    source = rng.randrange(len(accounts))
    return payment_service_pb2.CreatePaymentRequest(
        idempotency_key=str(uuid.uuid4()),
        source_account_id=accounts[source],
        destination_account_id=accounts[payee(source, rng, len(accounts))],
        amount=money_pb2.Money(minor_units=everyday_amount(rng), currency_code=CURRENCY),
        reference="bench",
        client_context=customer_context(source),
    )


def payment_labels(payment: payment_pb2.Payment) -> list[str]:
    status = payment_pb2.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_")
    return [status, *(f"risk:{reason}" for reason in payment.risk_reasons)]


@dataclass
class RiskWorkload(GrpcWorkload):
    """RiskService/ScoreTransaction alone, for the same customers and payees."""

    accounts: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    _stubs: list[RiskServiceAsyncStub] = field(default_factory=list, init=False, repr=False)

    def bind(self, channels: list[grpc.aio.Channel]) -> None:
        self._stubs = [risk_service_pb2_grpc.RiskServiceStub(c) for c in channels]

    async def call(self, rng: random.Random) -> Sequence[str]:
        source = rng.randrange(len(self.accounts))
        request = risk_service_pb2.ScoreTransactionRequest(
            transaction_id=str(uuid.uuid4()),
            customer_id=self.customers[source],
            source_account_id=self.accounts[source],
            destination_account_id=self.accounts[payee(source, rng, len(self.accounts))],
            amount=money_pb2.Money(minor_units=everyday_amount(rng), currency_code=CURRENCY),
            client_context=customer_context(source),
        )
        response = await self._stubs[self.pick()].ScoreTransaction(request, timeout=self.timeout)
        decision = risk_service_pb2.Decision.Name(response.decision).removeprefix("DECISION_")
        tags = [f"risk:{reason}" for reason in response.reason_codes]
        if response.fallback:
            tags.append("fallback")
        return [decision, *tags]


class HttpError(Exception):
    """The edge answered with a status other than 2xx (and, when it gave one, a reason)."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason


def _reason(response: httpx.Response) -> str:
    try:
        details = response.json().get("details") or [{}]
        return str(details[0].get("reason", ""))
    except (ValueError, AttributeError, IndexError):
        return ""


@dataclass(frozen=True)
class EdgeCustomer:
    """A customer signed in at the edge: their access token and their funded account."""

    token: str
    account: str


@dataclass
class EdgePaymentWorkload(Workload):
    """The payment scenario through the edge: POST /v1/payments, HTTPS + JSON.

    Each request is made by one of ``customers`` (a random one), with their
    access token, from their account to another customer's (a few regular
    payees, as in the gRPC scenario), with a fresh ``Idempotency-Key``. The
    body is CreatePayment in proto3's JSON mapping, written by hand rather
    than through json_format so that the load generator stays cheap. The
    edge's certificate is checked against the mesh CA.
    """

    base_url: str
    ca: str
    customers: tuple[EdgeCustomer, ...] = ()
    timeout: float = 30.0
    _clients: list[httpx.AsyncClient] = field(default_factory=list, init=False, repr=False)
    _next: int = field(default=0, init=False, repr=False)

    async def start(self, connections: int) -> None:
        context = ssl.create_default_context(cafile=self.ca)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._clients = [
            httpx.AsyncClient(
                base_url=self.base_url, verify=context, timeout=self.timeout, limits=limits
            )
            for _ in range(max(1, connections))
        ]

    async def call(self, rng: random.Random) -> Sequence[str]:
        self._next = (self._next + 1) % len(self._clients)
        count = len(self.customers)
        source = rng.randrange(count)
        payer = self.customers[source]
        context = customer_context(source)
        body = {
            "sourceAccountId": payer.account,
            "destinationAccountId": self.customers[payee(source, rng, count)].account,
            "amount": {"minorUnits": str(everyday_amount(rng)), "currencyCode": CURRENCY},
            "reference": "bench",
            "clientContext": {
                "channel": "CHANNEL_MOBILE",
                "deviceId": context.device_id,
                "geo": {"latitude": context.geo.latitude, "longitude": context.geo.longitude},
            },
        }
        response = await self._clients[self._next].post(
            "/v1/payments",
            json=body,
            headers={
                "Authorization": f"Bearer {payer.token}",
                "Idempotency-Key": str(uuid.uuid4()),
                "User-Agent": context.user_agent,
            },
        )
        if not 200 <= response.status_code < 300:
            raise HttpError(response.status_code, _reason(response))
        payment = response.json().get("payment", {})
        status = str(payment.get("status", "")).removeprefix("PAYMENT_STATUS_")
        return [status, *(f"risk:{reason}" for reason in payment.get("riskReasons", ()))]

    async def stop(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients = []
