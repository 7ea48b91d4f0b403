"""The AccountService gRPC servicer: protobuf in, use case, protobuf out.

No rules here (cosmicpython's thin entrypoint): parsing lives in convert.py,
decisions in the domain, and errors are mapped by the mesh's interceptor.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.account.v1 import account_service_pb2_grpc as svc_grpc
from bankmesh.common.v1 import pagination_pb2
from services.account.domain.errors import InvalidRequest
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.audit.origin import current_origin

from . import convert

Context = grpc.aio.ServicerContext[Any, Any]


class AccountServicer(svc_grpc.AccountServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def OpenAccount(
        self, request: svc.OpenAccountRequest, context: Context
    ) -> svc.OpenAccountResponse:
        account, created = await self._ledger.open_account(
            OpenAccount(
                account_id=convert.parse_uuid(request.account_id, "account_id", required=False),
                customer_id=request.customer_id,
                currency=request.currency_code,
                account_type=convert.account_type(request.type),
                limits=convert.limits(request.limits, request.HasField("limits")),
                metadata=dict(request.metadata),
            ),
            convert.viewer(),
        )
        return svc.OpenAccountResponse(
            account=convert.account(account), already_existed=not created
        )

    async def GetAccount(
        self, request: svc.GetAccountRequest, context: Context
    ) -> svc.GetAccountResponse:
        account_id = convert.required_uuid(request.account_id, "account_id")
        account = await self._ledger.get_account(account_id, convert.viewer())
        return svc.GetAccountResponse(account=convert.account(account))

    async def ListAccounts(
        self, request: svc.ListAccountsRequest, context: Context
    ) -> svc.ListAccountsResponse:
        page = await self._ledger.list_accounts(
            request.customer_id, request.page.page_size, request.page.page_token, convert.viewer()
        )
        return svc.ListAccountsResponse(
            accounts=[convert.account(a) for a in page.items],
            page=pagination_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def FreezeAccount(
        self, request: svc.FreezeAccountRequest, context: Context
    ) -> svc.FreezeAccountResponse:
        account = await self._ledger.freeze(convert.required_uuid(request.account_id, "account_id"))
        return svc.FreezeAccountResponse(account=convert.account(account))

    async def UnfreezeAccount(
        self, request: svc.UnfreezeAccountRequest, context: Context
    ) -> svc.UnfreezeAccountResponse:
        account = await self._ledger.unfreeze(
            convert.required_uuid(request.account_id, "account_id")
        )
        return svc.UnfreezeAccountResponse(account=convert.account(account))

    async def CloseAccount(
        self, request: svc.CloseAccountRequest, context: Context
    ) -> svc.CloseAccountResponse:
        account = await self._ledger.close(convert.required_uuid(request.account_id, "account_id"))
        return svc.CloseAccountResponse(account=convert.account(account))

    async def CreateTransfer(
        self, request: svc.CreateTransferRequest, context: Context
    ) -> svc.CreateTransferResponse:
        if not request.HasField("transfer"):
            raise InvalidRequest("transfer is required", field="transfer")
        transfer, existed = await self._ledger.create_transfer(
            convert.new_transfer(request.transfer, origin=current_origin())
        )
        return svc.CreateTransferResponse(
            transfer=convert.transfer(transfer), already_existed=existed
        )

    async def CreateTransfers(
        self, request: svc.CreateTransfersRequest, context: Context
    ) -> svc.CreateTransfersResponse:
        origin = current_origin()
        transfers = [
            convert.new_transfer(t, f"transfers[{i}]", origin)
            for i, t in enumerate(request.transfers)
        ]
        results = await self._ledger.create_transfers(transfers)
        return svc.CreateTransfersResponse(results=[convert.transfer_result(r) for r in results])

    async def GetTransfer(
        self, request: svc.GetTransferRequest, context: Context
    ) -> svc.GetTransferResponse:
        transfer = await self._ledger.get_transfer(
            convert.required_uuid(request.transfer_id, "transfer_id")
        )
        return svc.GetTransferResponse(transfer=convert.transfer(transfer))

    async def ListEntries(
        self, request: svc.ListEntriesRequest, context: Context
    ) -> svc.ListEntriesResponse:
        page = await self._ledger.list_entries(
            convert.required_uuid(request.account_id, "account_id"),
            request.page.page_size,
            request.page.page_token,
            convert.viewer(),
        )
        return svc.ListEntriesResponse(
            entries=[convert.entry(e) for e in page.items],
            page=pagination_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def GetBalance(
        self, request: svc.GetBalanceRequest, context: Context
    ) -> svc.GetBalanceResponse:
        account_id = convert.required_uuid(request.account_id, "account_id")
        as_of = convert.to_datetime(request.as_of) if request.HasField("as_of") else None
        balances = await self._ledger.balance_at(account_id, as_of, convert.viewer())
        response = svc.GetBalanceResponse(
            account_id=str(account_id), balances=convert.balances(balances)
        )
        if as_of is not None:
            response.as_of.CopyFrom(request.as_of)
        return response
