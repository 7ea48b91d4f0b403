"""`LedgerPort` over gRPC: the account service's generated stubs on a grpc.aio channel.

The account service reports a refusal as a google.rpc.Status whose ErrorInfo
carries the reason (INSUFFICIENT_FUNDS, ID_ALREADY_FAILED, ...). Those come
back as `TransferOutcome(reason=...)`: the ledger decided, nothing moved.
Everything else (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED after the ledger's
own retries, INTERNAL) means we do not know whether the transfer happened,
and raises `DependencyUnavailable`; the payment keeps its state and the same
transfer id is sent again later, which the ledger answers with EXISTS if the
first one got through.

Each call's timeout is the incoming call's remaining time minus a margin,
or `default_timeout` when there is no incoming deadline (see `deadlines`).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.account.v1 import account_service_pb2_grpc as svc_grpc
from bankmesh.common.v1 import money_pb2
from mesh.errors import ERROR_DOMAIN, error_info
from services.payment.service_layer import deadlines
from services.payment.service_layer.ports import (
    DependencyUnavailable,
    HoldState,
    LedgerAccount,
    LedgerTransfer,
    TransferKind,
    TransferOutcome,
    TransferRequest,
)

if TYPE_CHECKING:
    from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceAsyncStub

# A channel, or how to get one when it is first needed (the account service's
# address may be published only after we start).
ChannelSource = grpc.aio.Channel | Callable[[], grpc.aio.Channel]

# Codes the account service sends with a decided refusal (see its errors.py).
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_KINDS = {
    TransferKind.SINGLE_PHASE: pb.TRANSFER_KIND_SINGLE_PHASE,
    TransferKind.PENDING: pb.TRANSFER_KIND_PENDING,
    TransferKind.POST_PENDING: pb.TRANSFER_KIND_POST_PENDING,
    TransferKind.VOID_PENDING: pb.TRANSFER_KIND_VOID_PENDING,
}
_HOLD_STATES = {
    pb.PENDING_STATE_PENDING: HoldState.PENDING,
    pb.PENDING_STATE_POSTED: HoldState.POSTED,
    pb.PENDING_STATE_VOIDED: HoldState.VOIDED,
    pb.PENDING_STATE_EXPIRED: HoldState.EXPIRED,
}

SERVICE = "account"

# Accounts remembered by id (a few hundred bytes each): enough for every
# active payer and payee of a busy day on one replica, bounded in memory.
ACCOUNT_CACHE_SIZE = 50_000


class GrpcLedger:
    """The ledger as payment needs it.

    What payment reads of an account (its id, owner and currency) never
    changes once the account exists, so accounts found are remembered (up to
    `account_cache_size`, least recently used first out): a customer's second
    payment costs no GetAccount call. An account not found is asked again next
    time, since it may be opened meanwhile. Status and balances are never
    cached; the ledger checks those itself when money moves.
    """

    def __init__(
        self,
        channel: ChannelSource,
        *,
        default_timeout: float = 2.0,
        account_cache_size: int = ACCOUNT_CACHE_SIZE,
    ) -> None:
        self._source = channel
        self._default_timeout = default_timeout
        self._accounts: OrderedDict[uuid.UUID, LedgerAccount] = OrderedDict()
        self._account_cache_size = account_cache_size

    def _stub(self) -> AccountServiceAsyncStub:
        try:
            channel = self._source if isinstance(self._source, grpc.aio.Channel) else self._source()
        except LookupError as exc:
            raise DependencyUnavailable(SERVICE, str(exc)) from exc
        return svc_grpc.AccountServiceStub(channel)

    def _timeout(self) -> float:
        timeout = deadlines.budget(self._default_timeout)
        if timeout <= 0:
            raise DependencyUnavailable(SERVICE, "no time left before the caller's deadline")
        return timeout

    async def create_transfer(self, request: TransferRequest) -> TransferOutcome:
        message = pb.NewTransfer(
            transfer_id=str(request.id),
            debit_account_id=_id(request.debit_account_id),
            credit_account_id=_id(request.credit_account_id),
            kind=_KINDS[request.kind],
            pending_id=_id(request.pending_id),
            timeout_seconds=request.timeout_seconds,
            code=request.code,
            metadata=dict(request.metadata),
        )
        if request.amount is not None:
            message.amount.CopyFrom(
                money_pb2.Money(minor_units=request.amount, currency_code=request.currency or "")
            )
        stub = self._stub()
        try:
            response = await stub.CreateTransfer(
                svc.CreateTransferRequest(transfer=message), timeout=self._timeout()
            )
        except grpc.aio.AioRpcError as exc:
            reason = refusal_reason(exc)
            if reason is None:
                raise DependencyUnavailable(SERVICE, exc.code().name) from exc
            return TransferOutcome(reason=reason)
        return TransferOutcome(
            transfer=_transfer(response.transfer), existed=response.already_existed
        )

    async def get_transfer(self, transfer_id: uuid.UUID) -> LedgerTransfer | None:
        stub = self._stub()
        try:
            response = await stub.GetTransfer(
                svc.GetTransferRequest(transfer_id=str(transfer_id)), timeout=self._timeout()
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise DependencyUnavailable(SERVICE, exc.code().name) from exc
        return _transfer(response.transfer)

    async def get_account(self, account_id: uuid.UUID) -> LedgerAccount | None:
        known = self._accounts.get(account_id)
        if known is not None:
            self._accounts.move_to_end(account_id)
            return known
        found = await self._fetch_account(account_id)
        if found is not None and self._account_cache_size > 0:
            self._accounts[account_id] = found
            if len(self._accounts) > self._account_cache_size:
                self._accounts.popitem(last=False)
        return found

    async def _fetch_account(self, account_id: uuid.UUID) -> LedgerAccount | None:
        stub = self._stub()
        try:
            response = await stub.GetAccount(
                svc.GetAccountRequest(account_id=str(account_id)), timeout=self._timeout()
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise DependencyUnavailable(SERVICE, exc.code().name) from exc
        account = response.account
        return LedgerAccount(
            id=uuid.UUID(account.account_id),
            customer_id=account.customer_id,
            currency=account.currency_code,
        )


def refusal_reason(exc: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason of a decided refusal; None when nothing was decided."""
    code = exc.code()
    if code not in _REFUSALS:
        return None
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type] # AioRpcError quacks like a Call
    except ValueError:
        status = None
    info = error_info(status) if status is not None else None
    if info is not None and info.domain == ERROR_DOMAIN and info.reason:
        return str(info.reason)
    # A refusal without our ErrorInfo is still a decision; its code is all we know.
    return str(code.name)


def _id(value: uuid.UUID | None) -> str:
    return "" if value is None else str(value)


def _transfer(t: pb.Transfer) -> LedgerTransfer:
    return LedgerTransfer(
        id=uuid.UUID(t.transfer_id),
        kind=pb.TransferKind.Name(t.kind).removeprefix("TRANSFER_KIND_"),
        amount=t.amount.minor_units,
        currency=t.amount.currency_code,
        pending_state=_HOLD_STATES.get(t.pending_state),
        expires_at=t.expire_time.ToDatetime(tzinfo=UTC) if t.HasField("expire_time") else None,
    )
