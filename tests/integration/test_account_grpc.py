"""The account service over real gRPC: a grpc.aio server on port 0 and generated stubs.

These tests check the wire contract a client sees: payloads, status codes and
the ErrorInfo reason carried in google.rpc.Status.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.account.v1 import account_service_pb2_grpc as svc_grpc
from bankmesh.common.v1 import errors_pb2, money_pb2, pagination_pb2
from mesh.errors import ERROR_DOMAIN, error_info
from services.account.app import SERVICE_NAME, build_account_server
from services.account.service_layer.ledger import Ledger

if TYPE_CHECKING:
    # The generated stubs type an aio channel's stub separately; it exists only in the .pyi.
    from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceAsyncStub as Stub


@pytest.fixture
async def stub(ledger: Ledger) -> AsyncIterator[Stub]:
    server, port, health = build_account_server(ledger)
    await server.start()
    await health.set_serving(True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield svc_grpc.AccountServiceStub(channel)
    await server.stop(grace=None)


def eur(minor_units: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor_units, currency_code="EUR")


async def open_account(stub: Stub, kind: int = pb.ACCOUNT_TYPE_CUSTOMER) -> str:
    response = await stub.OpenAccount(
        svc.OpenAccountRequest(
            customer_id="cust-1" if kind == pb.ACCOUNT_TYPE_CUSTOMER else "",
            currency_code="EUR",
            type=kind,  # type: ignore[arg-type]
        )
    )
    return response.account.account_id


def transfer(debit: str, credit: str, amount: int, **kw: object) -> svc.CreateTransferRequest:
    fields: dict[str, object] = {"kind": pb.TRANSFER_KIND_SINGLE_PHASE, **kw}
    return svc.CreateTransferRequest(
        transfer=pb.NewTransfer(
            transfer_id=str(uuid.uuid4()),
            debit_account_id=debit,
            credit_account_id=credit,
            amount=eur(amount),
            **fields,  # type: ignore[arg-type]
        )
    )


async def refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Await a call that must fail; return its code, ErrorInfo reason and metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None, "the error must carry a google.rpc.Status"
    info = error_info(status)
    assert info is not None, "the Status must carry an ErrorInfo"
    assert info.domain == ERROR_DOMAIN
    return caught.value.code(), info.reason, dict(info.metadata)


async def test_a_deposit_and_a_payment_show_in_balances_and_the_statement(stub: Stub) -> None:
    """Money moved over gRPC is visible in both accounts and in the payer's statement."""
    bank = await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT)
    alice, bob = await open_account(stub), await open_account(stub)
    await stub.CreateTransfer(transfer(bank, alice, 10_000))
    paid = await stub.CreateTransfer(transfer(alice, bob, 2_550))

    assert paid.transfer.amount.minor_units == 2_550
    alice_account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert alice_account.balances.posted.minor_units == 7_450
    assert alice_account.balances.available.minor_units == 7_450
    bank_account = (await stub.GetAccount(svc.GetAccountRequest(account_id=bank))).account
    assert bank_account.balances.posted.minor_units == 10_000  # settlement is debit-normal

    statement = await stub.ListEntries(svc.ListEntriesRequest(account_id=alice))
    assert [e.direction for e in statement.entries] == [
        pb.ENTRY_DIRECTION_DEBIT,
        pb.ENTRY_DIRECTION_CREDIT,
    ]
    assert [e.balances_after.posted.minor_units for e in statement.entries] == [7_450, 10_000]


async def test_repeating_a_transfer_returns_the_original_and_moves_nothing(stub: Stub) -> None:
    """An identical retry is acknowledged as already existing; the balance moves once."""
    bank, alice = await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT), await open_account(stub)
    request = transfer(bank, alice, 500)
    first = await stub.CreateTransfer(request)
    again = await stub.CreateTransfer(request)
    assert not first.already_existed
    assert again.already_existed
    assert again.transfer.create_time == first.transfer.create_time
    account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert account.balances.posted.minor_units == 500


async def test_an_overdraft_is_refused_with_insufficient_funds(stub: Stub) -> None:
    """A customer cannot spend money they do not have: FAILED_PRECONDITION, INSUFFICIENT_FUNDS."""
    alice, bob = await open_account(stub), await open_account(stub)
    code, reason, _ = await refusal(stub.CreateTransfer(transfer(alice, bob, 1)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")


async def test_a_retry_of_a_failed_transfer_id_keeps_failing(stub: Stub) -> None:
    """Once failed, an id fails forever, even after the funds arrive."""
    bank, alice, bob = (
        await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT),
        await open_account(stub),
        await open_account(stub),
    )
    request = transfer(alice, bob, 100)
    await refusal(stub.CreateTransfer(request))
    await stub.CreateTransfer(transfer(bank, alice, 1_000))
    code, reason, _ = await refusal(stub.CreateTransfer(request))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ID_ALREADY_FAILED")


@pytest.mark.parametrize(
    ("mutate", "code", "reason", "field"),
    [
        (
            lambda r: setattr(r.transfer, "transfer_id", "not-a-uuid"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ID",
            "transfer.transfer_id",
        ),
        (
            lambda r: r.transfer.amount.CopyFrom(eur(0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_AMOUNT",
            "",
        ),
        (
            lambda r: r.transfer.amount.CopyFrom(eur(-5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_AMOUNT",
            "",
        ),
        (
            lambda r: setattr(r.transfer.amount, "currency_code", "EURO"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CURRENCY",
            "",
        ),
        (
            lambda r: setattr(r.transfer.amount, "currency_code", "USD"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CURRENCY_MISMATCH",
            "",
        ),
        (
            lambda r: setattr(r.transfer, "kind", pb.TRANSFER_KIND_UNSPECIFIED),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "transfer.kind",
        ),
        (
            lambda r: setattr(r.transfer, "credit_account_id", r.transfer.debit_account_id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ACCOUNTS_MUST_BE_DIFFERENT",
            "",
        ),
        (
            lambda r: setattr(r.transfer, "credit_account_id", str(uuid.uuid4())),
            grpc.StatusCode.NOT_FOUND,
            "CREDIT_ACCOUNT_NOT_FOUND",
            "",
        ),
    ],
    ids=[
        "malformed id",
        "zero amount",
        "negative amount",
        "unknown currency",
        "other currency",
        "no kind",
        "same account",
        "unknown account",
    ],
)
async def test_bad_transfers_get_a_precise_reason_and_change_nothing(
    stub: Stub, mutate: object, code: grpc.StatusCode, reason: str, field: str
) -> None:
    """Each malformed transfer is refused with its own reason; balances stay put."""
    bank, alice = await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT), await open_account(stub)
    request = transfer(bank, alice, 100)
    mutate(request)  # type: ignore[operator]
    got_code, got_reason, metadata = await refusal(stub.CreateTransfer(request))
    assert (got_code, got_reason) == (code, reason)
    if field:
        assert metadata["field"] == field
    account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert account.balances.credits_posted == 0


async def test_every_reason_sent_is_named_in_the_contract(stub: Stub) -> None:
    """A reason string clients receive is always an ErrorReason value of common/v1."""
    from services.account.domain.errors import Reason

    names = {v.name.removeprefix("ERROR_REASON_") for v in errors_pb2.ErrorReason.DESCRIPTOR.values}
    assert {r.value for r in Reason} <= names


async def test_a_hold_is_posted_in_part_and_the_rest_released(stub: Stub) -> None:
    """A card-style authorisation: hold 80, capture 50, the other 30 is available again."""
    bank, alice, shop = (
        await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT),
        await open_account(stub),
        await open_account(stub),
    )
    await stub.CreateTransfer(transfer(bank, alice, 100))
    hold = await stub.CreateTransfer(
        transfer(alice, shop, 80, kind=pb.TRANSFER_KIND_PENDING, timeout_seconds=3600)
    )
    assert hold.transfer.pending_state == pb.PENDING_STATE_PENDING
    assert hold.transfer.HasField("expire_time")
    account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert account.balances.available.minor_units == 20

    post = svc.CreateTransferRequest(
        transfer=pb.NewTransfer(
            transfer_id=str(uuid.uuid4()),
            kind=pb.TRANSFER_KIND_POST_PENDING,
            pending_id=hold.transfer.transfer_id,
            amount=eur(50),
        )
    )
    await stub.CreateTransfer(post)
    account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert (account.balances.posted.minor_units, account.balances.available.minor_units) == (50, 50)
    held = await stub.GetTransfer(svc.GetTransferRequest(transfer_id=hold.transfer.transfer_id))
    assert held.transfer.pending_state == pb.PENDING_STATE_POSTED

    post.transfer.transfer_id = str(uuid.uuid4())
    code, reason, _ = await refusal(stub.CreateTransfer(post))
    assert (code, reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PENDING_TRANSFER_ALREADY_POSTED",
    )


async def test_a_linked_batch_fails_as_a_whole_with_one_result_each(stub: Stub) -> None:
    """If the second of two linked transfers fails, the first is undone too."""
    bank, alice, bob = (
        await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT),
        await open_account(stub),
        await open_account(stub),
    )
    first = transfer(bank, alice, 100, linked=True).transfer
    second = transfer(alice, bob, 500).transfer  # more than alice will have
    response = await stub.CreateTransfers(svc.CreateTransfersRequest(transfers=[first, second]))
    outcomes = [(r.outcome, errors_pb2.ErrorReason.Name(r.reason)) for r in response.results]
    assert outcomes == [
        (svc.CreateTransferResult.OUTCOME_FAILED, "ERROR_REASON_LINKED_EVENT_FAILED"),
        (svc.CreateTransferResult.OUTCOME_FAILED, "ERROR_REASON_INSUFFICIENT_FUNDS"),
    ]
    account = (await stub.GetAccount(svc.GetAccountRequest(account_id=alice))).account
    assert account.balances.credits_posted == 0


async def test_unknown_account_is_not_found(stub: Stub) -> None:
    """Asking for an account that does not exist is NOT_FOUND / ACCOUNT_NOT_FOUND."""
    code, reason, metadata = await refusal(
        stub.GetAccount(svc.GetAccountRequest(account_id=str(uuid.uuid4())))
    )
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
        "account_id",
    )


async def test_accounts_of_a_customer_page_in_order(stub: Stub) -> None:
    """Listing a customer's accounts pages through all of them once, oldest first."""
    customer = f"cust-{uuid.uuid4()}"
    opened = []
    for _ in range(5):
        response = await stub.OpenAccount(
            svc.OpenAccountRequest(
                customer_id=customer, currency_code="EUR", type=pb.ACCOUNT_TYPE_CUSTOMER
            )
        )
        opened.append(response.account.account_id)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListAccounts(
            svc.ListAccountsRequest(
                customer_id=customer,
                page=pagination_pb2.PageRequest(page_size=2, page_token=token),
            )
        )
        seen += [a.account_id for a in page.accounts]
        token = page.page.next_page_token
        if not token:
            break
    assert seen == opened


async def test_a_forged_page_token_is_refused(stub: Stub) -> None:
    """A page token the server never issued gets INVALID_PAGE_TOKEN, not a crash."""
    alice = await open_account(stub)
    code, reason, _ = await refusal(
        stub.ListEntries(
            svc.ListEntriesRequest(
                account_id=alice, page=pagination_pb2.PageRequest(page_token="garbage!!")
            )
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


async def test_balance_as_of_a_past_time_is_the_balance_then(stub: Stub) -> None:
    """GetBalance with as_of returns what the account held at that moment."""
    bank, alice = await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT), await open_account(stub)
    first = await stub.CreateTransfer(transfer(bank, alice, 300))
    await stub.CreateTransfer(transfer(bank, alice, 700))
    as_of = Timestamp()
    as_of.CopyFrom(first.transfer.create_time)
    then = await stub.GetBalance(svc.GetBalanceRequest(account_id=alice, as_of=as_of))
    now = await stub.GetBalance(svc.GetBalanceRequest(account_id=alice))
    assert then.balances.posted.minor_units == 300
    assert now.balances.posted.minor_units == 1_000


async def test_closing_needs_a_zero_balance(stub: Stub) -> None:
    """An account with money in it cannot close; an empty one can, and then refuses transfers."""
    bank, alice = await open_account(stub, pb.ACCOUNT_TYPE_SETTLEMENT), await open_account(stub)
    await stub.CreateTransfer(transfer(bank, alice, 10))
    code, reason, _ = await refusal(stub.CloseAccount(svc.CloseAccountRequest(account_id=alice)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_BALANCE_NOT_ZERO")
    await stub.CreateTransfer(transfer(alice, bank, 10))
    closed = await stub.CloseAccount(svc.CloseAccountRequest(account_id=alice))
    assert closed.account.status == pb.ACCOUNT_STATUS_CLOSED
    code, reason, _ = await refusal(stub.CreateTransfer(transfer(bank, alice, 10)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_CLOSED")


async def test_health_and_reflection_are_served(ledger: Ledger) -> None:
    """Operators can probe the service with the standard health check."""
    server, port, health = build_account_server(ledger)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            probe = health_pb2_grpc.HealthStub(channel)
            await health.set_serving(False)
            before = await probe.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            await health.set_serving(True)
            after = await probe.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    finally:
        await server.stop(grace=None)
    assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert after.status == health_pb2.HealthCheckResponse.SERVING
