"""Payment remembers accounts it found (owner and currency never change), not ones it did not.

The adapter talks gRPC to a real grpc.aio server on port 0 that stands in for
the account service and counts GetAccount calls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from services.payment.adapters.ledger_client import GrpcLedger

pytestmark = pytest.mark.integration

KNOWN = [uuid.uuid4() for _ in range(3)]


class CountingAccounts:
    """GetAccount only: all payment's cache is about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def GetAccount(
        self, request: svc.GetAccountRequest, context: Any
    ) -> svc.GetAccountResponse:
        self.asked.append(request.account_id)
        if uuid.UUID(request.account_id) not in KNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such account")
        return svc.GetAccountResponse(
            account=pb.Account(
                account_id=request.account_id, customer_id="alice", currency_code="EUR"
            )
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[CountingAccounts, grpc.aio.Channel]]:
    accounts = CountingAccounts()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        accounts.GetAccount,
        request_deserializer=svc.GetAccountRequest.FromString,
        response_serializer=svc.GetAccountResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bankmesh.account.v1.AccountService", {"GetAccount": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield accounts, channel
    await server.stop(grace=None)


async def test_an_account_found_is_asked_for_once(
    served: tuple[CountingAccounts, grpc.aio.Channel],
) -> None:
    accounts, channel = served
    ledger = GrpcLedger(channel)
    for _ in range(3):
        found = await ledger.get_account(KNOWN[0])
        assert found is not None
        assert (found.id, found.customer_id, found.currency) == (KNOWN[0], "alice", "EUR")
    assert accounts.asked == [str(KNOWN[0])]


async def test_an_account_not_found_is_asked_for_again(
    served: tuple[CountingAccounts, grpc.aio.Channel],
) -> None:
    accounts, channel = served
    ledger = GrpcLedger(channel)
    missing = uuid.uuid4()
    assert await ledger.get_account(missing) is None
    assert await ledger.get_account(missing) is None
    assert accounts.asked == [str(missing), str(missing)]


async def test_the_least_recently_used_account_leaves_a_full_cache(
    served: tuple[CountingAccounts, grpc.aio.Channel],
) -> None:
    accounts, channel = served
    ledger = GrpcLedger(channel, account_cache_size=2)
    first, second, third = KNOWN
    await ledger.get_account(first)
    await ledger.get_account(second)
    await ledger.get_account(first)  # first is now the most recently used
    await ledger.get_account(third)  # evicts second
    accounts.asked.clear()
    await ledger.get_account(first)
    await ledger.get_account(third)
    assert accounts.asked == []
    await ledger.get_account(second)
    assert accounts.asked == [str(second)]
