"""The account service behind the mesh's security: mTLS identities, policy, end users.

A real account server on port 0 with `ServerSecurity`; clients connect with the
certificates of different services and, through the end-user interceptor, on
behalf of different people.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.account.v1 import account_service_pb2_grpc as svc_grpc
from bankmesh.common.v1 import money_pb2
from mesh import context
from mesh.context import EndUser
from mesh.errors import error_info
from services.account.app import build_account_server
from services.account.domain.model import AccountType
from services.account.service_layer.ledger import Ledger, OpenAccount
from tests.support.mesh import TestMesh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
async def account_port(ledger: Ledger, mesh: TestMesh) -> AsyncIterator[int]:
    server, port, _ = build_account_server(ledger, security=mesh.security("account"))
    await server.start()
    yield port
    await server.stop(grace=None)


async def code_and_reason(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    info = error_info(status) if status else None
    return caught.value.code(), info.reason if info else ""


def transfer_request(debit: uuid.UUID, credit: uuid.UUID) -> svc.CreateTransferRequest:
    return svc.CreateTransferRequest(
        transfer=pb.NewTransfer(
            transfer_id=str(uuid.uuid4()),
            debit_account_id=str(debit),
            credit_account_id=str(credit),
            amount=money_pb2.Money(minor_units=100, currency_code="EUR"),
            kind=pb.TRANSFER_KIND_SINGLE_PHASE,
        )
    )


async def accounts(ledger: Ledger) -> tuple[uuid.UUID, uuid.UUID]:
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    alice, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "alice"))
    return bank.id, alice.id


async def test_payment_may_move_money_over_mtls(
    ledger: Ledger, mesh: TestMesh, account_port: int
) -> None:
    """The payment service's certificate opens CreateTransfer."""
    bank, alice = await accounts(ledger)
    async with mesh.channel("payment", "account", account_port) as channel:
        response = await svc_grpc.AccountServiceStub(channel).CreateTransfer(
            transfer_request(bank, alice)
        )
    assert response.transfer.amount.minor_units == 100


@pytest.mark.parametrize("caller", ["risk", "edge", "identity"])
async def test_other_services_may_not_move_money(
    ledger: Ledger, mesh: TestMesh, account_port: int, caller: str
) -> None:
    """A valid mesh certificate of the wrong service gets PERMISSION_DENIED; nothing moves."""
    bank, alice = await accounts(ledger)
    async with mesh.channel(caller, "account", account_port) as channel:
        stub = svc_grpc.AccountServiceStub(channel)
        code, reason = await code_and_reason(stub.CreateTransfer(transfer_request(bank, alice)))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert (await ledger.get_account(alice)).balances.posted == 0


async def test_a_client_without_a_certificate_cannot_connect(
    mesh: TestMesh, account_port: int
) -> None:
    """TLS without a client certificate fails the handshake: UNAVAILABLE, no RPC runs."""
    ca = (mesh.identity_dir("operator") / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{account_port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "account.bankmesh.local")],
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await svc_grpc.AccountServiceStub(channel).GetAccount(
                svc.GetAccountRequest(account_id=str(uuid.uuid4())), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_customer_through_the_edge_sees_only_their_own_account(
    ledger: Ledger, mesh: TestMesh, account_port: int
) -> None:
    """With Alice signed in at the edge, Bob's account is NOT_FOUND and hers is readable."""
    _, alice_account = await accounts(ledger)
    bob_account, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "bob"))
    token = context.end_user.set(EndUser("u-alice", "alice", frozenset({"customer"})))
    try:
        async with mesh.channel("edge", "account", account_port) as channel:
            stub = svc_grpc.AccountServiceStub(channel)
            mine = await stub.GetAccount(svc.GetAccountRequest(account_id=str(alice_account)))
            code, reason = await code_and_reason(
                stub.GetAccount(svc.GetAccountRequest(account_id=str(bob_account.id)))
            )
    finally:
        context.end_user.reset(token)
    assert mine.account.customer_id == "alice"
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


async def test_a_customer_cannot_freeze_accounts(
    ledger: Ledger, mesh: TestMesh, account_port: int
) -> None:
    """FreezeAccount needs a support or admin role: a customer gets PERMISSION_DENIED."""
    _, alice_account = await accounts(ledger)
    token = context.end_user.set(EndUser("u-alice", "alice", frozenset({"customer"})))
    try:
        async with mesh.channel("edge", "account", account_port) as channel:
            code, reason = await code_and_reason(
                svc_grpc.AccountServiceStub(channel).FreezeAccount(
                    svc.FreezeAccountRequest(account_id=str(alice_account))
                )
            )
    finally:
        context.end_user.reset(token)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_risk_cannot_speak_for_a_customer(
    ledger: Ledger, mesh: TestMesh, account_port: int
) -> None:
    """Only assertion issuers (edge, payment) may act for end users; risk may not."""
    _, alice_account = await accounts(ledger)
    token = context.end_user.set(EndUser("u-alice", "alice", frozenset({"customer"})))
    try:
        async with mesh.channel("risk", "account", account_port) as channel:
            code, _ = await code_and_reason(
                svc_grpc.AccountServiceStub(channel).GetAccount(
                    svc.GetAccountRequest(account_id=str(alice_account))
                )
            )
    finally:
        context.end_user.reset(token)
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_forged_end_user_header_is_refused(
    ledger: Ledger, mesh: TestMesh, account_port: int
) -> None:
    """An unsigned end-user header is UNAUTHENTICATED / TOKEN_INVALID, not trusted."""
    _, alice_account = await accounts(ledger)
    async with mesh.channel("operator", "account", account_port) as channel:
        code, reason = await code_and_reason(
            svc_grpc.AccountServiceStub(channel).GetAccount(
                svc.GetAccountRequest(account_id=str(alice_account)),
                metadata=(("x-bankmesh-end-user", "eyJhbGciOiJub25lIn0.e30."),),
            )
        )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
