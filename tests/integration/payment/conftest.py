"""The payment service against real neighbours: PostgreSQL, the account service, a risk server.

* The payment database is migrated from scratch once per session.
* The ledger is the real account service: a gRPC server on port 0 over the
  session's ledger database (`ledger` fixture), as in test_account_grpc.py.
* Risk is a real grpc.aio server on port 0 implementing RiskService whose
  decisions the test scripts by amount (`risk.decide(amount, ...)`), can be
  taken down (`risk.down = True`) or made slow (`risk.delay`). Like the real
  one it stores a decision per transaction id and repeats it.
* The payment service runs its real servicer and error mapping; a test-only
  interceptor sets `mesh.context.end_user` from `x-test-end-user` metadata,
  standing in for the mesh's authentication interceptors, so a test can call
  as a customer or a reviewer (`as_user(...)`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from grpc_status import rpc_status
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.payment.v1 import payment_service_pb2_grpc
from bankmesh.risk.v1 import risk_service_pb2 as risk_pb
from bankmesh.risk.v1 import risk_service_pb2_grpc as risk_grpc
from mesh import context as mesh_context
from mesh.errors import ERROR_DOMAIN, error_info
from mesh.interceptors.errors import ErrorMappingInterceptor
from services.account.adapters import tables as ledger_tables
from services.account.app import build_account_server
from services.account.domain.model import AccountType, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.database import create_engine
from services.payment.adapters.ledger_client import GrpcLedger
from services.payment.adapters.locks import AdvisoryLocks
from services.payment.adapters.risk_client import GrpcRisk
from services.payment.adapters.unit_of_work import SqlUnitOfWork
from services.payment.app import migrate
from services.payment.entrypoints.errors import translate
from services.payment.entrypoints.grpc_servicer import PaymentServicer
from services.payment.service_layer.payments import Payments, Settings
from tests.conftest import DatabaseFactory
from tests.support.clock import SteppingClock

if TYPE_CHECKING:
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub as Stub

END_USER_HEADER = "x-test-end-user"


# -- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def payment_database_url(databases: DatabaseFactory) -> str:
    return databases.create(migrate, "payment")


@pytest.fixture(scope="session")
async def payment_engine(payment_database_url: str) -> AsyncIterator[AsyncEngine]:
    # Small: the PostgreSQL server is shared with other suites (max_connections is
    # finite), and waiters queue on the pool rather than fail.
    engine = create_engine(payment_database_url, pool_size=5)
    yield engine
    await engine.dispose()


# -- risk --------------------------------------------------------------------------------


@dataclass
class ScriptedRisk(risk_grpc.RiskServiceServicer):
    """RiskService answering by amount: APPROVE unless the test scripted otherwise."""

    decisions: dict[int, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    down: bool = False
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    stored: dict[str, risk_pb.ScoreTransactionResponse] = field(default_factory=dict)

    def decide(self, amount: int, decision: int, *reasons: str) -> None:
        self.decisions[amount] = (decision, reasons)

    async def ScoreTransaction(
        self, request: risk_pb.ScoreTransactionRequest, context: Any
    ) -> risk_pb.ScoreTransactionResponse:
        self.calls.append(request.transaction_id)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "risk is down")
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.transaction_id in self.stored:
            return self.stored[request.transaction_id]
        decision, reasons = self.decisions.get(
            request.amount.minor_units, (risk_pb.DECISION_APPROVE, ())
        )
        response = risk_pb.ScoreTransactionResponse(
            decision_id=str(uuid.uuid4()),
            score=0.5,
            decision=decision,  # type: ignore[arg-type]
            reason_codes=list(reasons),
            ruleset_version="scripted",
        )
        self.stored[request.transaction_id] = response
        return response


@dataclass
class Server:
    port: int
    server: grpc.aio.Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def risk() -> ScriptedRisk:
    return ScriptedRisk()


@pytest.fixture
async def risk_server(risk: ScriptedRisk) -> AsyncIterator[Server]:
    server = grpc.aio.server()
    risk_grpc.add_RiskServiceServicer_to_server(risk, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Server(port, server)
    await server.stop(grace=None)


# -- the ledger ----------------------------------------------------------------------------


@pytest.fixture
async def account_server(ledger: Ledger) -> AsyncIterator[Server]:
    server, port, health = build_account_server(ledger)
    await server.start()
    await health.set_serving(True)
    yield Server(port, server)
    await server.stop(grace=None)


class Bank:
    """Accounts on the real ledger, and what the ledger's own tables say about them."""

    def __init__(self, ledger: Ledger, engine: AsyncEngine) -> None:
        self.ledger = ledger
        self.engine = engine
        self._settlement: uuid.UUID | None = None

    async def customer(self, customer_id: str, funds: int = 0, currency: str = "EUR") -> str:
        account, _ = await self.ledger.open_account(
            OpenAccount(currency, AccountType.CUSTOMER, customer_id)
        )
        if funds:
            if self._settlement is None:
                settlement, _ = await self.ledger.open_account(
                    OpenAccount(currency, AccountType.SETTLEMENT)
                )
                self._settlement = settlement.id
            await self.ledger.create_transfer(
                NewTransfer(
                    uuid.uuid4(),
                    TransferKind.SINGLE_PHASE,
                    self._settlement,
                    account.id,
                    funds,
                    currency,
                )
            )
        return str(account.id)

    async def posted(self, account_id: str) -> int:
        return (await self.ledger.get_account(uuid.UUID(account_id))).balances.posted

    async def available(self, account_id: str) -> int:
        return (await self.ledger.get_account(uuid.UUID(account_id))).balances.available

    async def transfers_between(self, a: str, b: str) -> list[str]:
        """Kinds of the ledger transfers between two accounts, oldest first."""
        t = ledger_tables.transfers
        ids = [uuid.UUID(a), uuid.UUID(b)]
        stmt = (
            select(t.c.kind)
            .where(t.c.debit_account_id.in_(ids), t.c.credit_account_id.in_(ids))
            .order_by(t.c.created_at)
        )
        async with self.engine.connect() as conn:
            return list((await conn.scalars(stmt)).all())

    async def entries_of(self, account_id: str) -> int:
        e = ledger_tables.entries
        stmt = select(func.count()).where(e.c.account_id == uuid.UUID(account_id))
        async with self.engine.connect() as conn:
            return int((await conn.scalar(stmt)) or 0)

    async def books_balance(self) -> bool:
        """Per currency, credits equal debits over all accounts, posted and pending."""
        a = ledger_tables.accounts
        stmt = select(
            a.c.currency,
            func.sum(a.c.credits_posted - a.c.debits_posted),
            func.sum(a.c.credits_pending - a.c.debits_pending),
        ).group_by(a.c.currency)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return all(posted == 0 and pending == 0 for _, posted, pending in rows)


@pytest.fixture
def bank(ledger: Ledger, ledger_engine: AsyncEngine) -> Bank:
    return Bank(ledger, ledger_engine)


# -- the payment service ----------------------------------------------------------------


@pytest.fixture
async def channels(
    account_server: Server, risk_server: Server
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    async with (
        grpc.aio.insecure_channel(account_server.address) as account,
        grpc.aio.insecure_channel(risk_server.address) as risk_channel,
    ):
        yield account, risk_channel


def make_payments(
    engine: AsyncEngine,
    account: grpc.aio.Channel,
    risk_channel: grpc.aio.Channel,
    clock: SteppingClock,
    locks_engine: AsyncEngine | None = None,
    **settings: Any,
) -> Payments:
    return Payments(
        lambda: SqlUnitOfWork(engine),
        AdvisoryLocks(locks_engine or engine),
        GrpcLedger(account),
        GrpcRisk(risk_channel),
        clock,
        Settings(**settings),
    )


@pytest.fixture
def payments(
    payment_engine: AsyncEngine,
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    clock: SteppingClock,
) -> Payments:
    return make_payments(payment_engine, *channels, clock)


class EndUserFromMetadata(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Test stand-in for the mesh's authentication: x-test-end-user -> mesh.context.end_user."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        raw = metadata.get(END_USER_HEADER)
        if handler is None or raw is None:
            return handler
        data = json.loads(raw)
        user = mesh_context.EndUser(
            data["user_id"], data.get("customer_id", ""), frozenset(data.get("roles", ()))
        )
        inner = handler.unary_unary

        async def with_user(request: Any, context: Any) -> Any:
            token = mesh_context.end_user.set(user)
            try:
                return await inner(request, context)
            finally:
                mesh_context.end_user.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            with_user,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def as_user(
    user_id: str, customer_id: str = "", roles: Sequence[str] = ("customer",)
) -> tuple[tuple[str, str], ...]:
    """Call metadata that makes the call on behalf of this end user."""
    document = {"user_id": user_id, "customer_id": customer_id, "roles": list(roles)}
    return ((END_USER_HEADER, json.dumps(document)),)


async def start_payment_server(payments: Payments) -> Server:
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor(translate), EndUserFromMetadata()]
    )
    payment_service_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(payments), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return Server(port, server)


@pytest.fixture
async def stub(payments: Payments) -> AsyncIterator[Stub]:
    server = await start_payment_server(payments)
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield payment_service_pb2_grpc.PaymentServiceStub(channel)
    await server.server.stop(grace=None)


async def refusal(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Await a call that must fail; return its code, ErrorInfo reason and metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None, "the error must carry a google.rpc.Status"
    info = error_info(status)
    assert info is not None, "the Status must carry an ErrorInfo"
    assert info.domain == ERROR_DOMAIN
    return caught.value.code(), info.reason, dict(info.metadata)


def new_key() -> str:
    return f"key-{uuid.uuid4()}"
