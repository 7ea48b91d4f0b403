"""Protobuf <-> domain values for the account service. No rules live here.

Inputs are parsed strictly: a malformed UUID or an unknown enum value is an
InvalidRequest naming the field, before anything reaches the use cases.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.common.v1 import money_pb2
from mesh import context
from services.account.domain.engine import Outcome, TransferResult
from services.account.domain.errors import InvalidRequest, Reason
from services.account.domain.model import (
    EVERYONE,
    Account,
    AccountStatus,
    AccountType,
    Balances,
    Entry,
    Limits,
    NewTransfer,
    Transfer,
    TransferKind,
    Viewer,
)
from services.common.audit.events import Origin

_ACCOUNT_TYPES = {
    pb.ACCOUNT_TYPE_CUSTOMER: AccountType.CUSTOMER,
    pb.ACCOUNT_TYPE_SETTLEMENT: AccountType.SETTLEMENT,
    pb.ACCOUNT_TYPE_INTERNAL: AccountType.INTERNAL,
}
_ACCOUNT_TYPES_PB = {v: k for k, v in _ACCOUNT_TYPES.items()}
_STATUSES_PB = {
    AccountStatus.ACTIVE: pb.ACCOUNT_STATUS_ACTIVE,
    AccountStatus.FROZEN: pb.ACCOUNT_STATUS_FROZEN,
    AccountStatus.CLOSED: pb.ACCOUNT_STATUS_CLOSED,
}
_KINDS = {
    pb.TRANSFER_KIND_SINGLE_PHASE: TransferKind.SINGLE_PHASE,
    pb.TRANSFER_KIND_PENDING: TransferKind.PENDING,
    pb.TRANSFER_KIND_POST_PENDING: TransferKind.POST_PENDING,
    pb.TRANSFER_KIND_VOID_PENDING: TransferKind.VOID_PENDING,
    pb.TRANSFER_KIND_EXPIRE_PENDING: TransferKind.EXPIRE_PENDING,
}
_KINDS_PB = {v: k for k, v in _KINDS.items()}
_PENDING_STATES_PB = {
    "PENDING": pb.PENDING_STATE_PENDING,
    "POSTED": pb.PENDING_STATE_POSTED,
    "VOIDED": pb.PENDING_STATE_VOIDED,
    "EXPIRED": pb.PENDING_STATE_EXPIRED,
}
_OUTCOMES_PB = {
    Outcome.CREATED: svc.CreateTransferResult.OUTCOME_CREATED,
    Outcome.EXISTS: svc.CreateTransferResult.OUTCOME_EXISTS,
    Outcome.FAILED: svc.CreateTransferResult.OUTCOME_FAILED,
}


# -- inputs ------------------------------------------------------------------------


def viewer() -> Viewer:
    """Whom the current call is for: the signed-in customer, or anyone (staff, services)."""
    user = context.end_user.get()
    if user is not None and user.is_customer:
        return Viewer(customer_id=user.customer_id)
    return EVERYONE


def parse_uuid(value: str, field: str, *, required: bool = True) -> uuid.UUID | None:
    if not value:
        if required:
            raise InvalidRequest(f"{field} is required", reason=Reason.INVALID_ID, field=field)
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidRequest(
            f"{field} must be a UUID such as 7c9e6679-7425-40de-944b-e07fc1f90ae7",
            reason=Reason.INVALID_ID,
            field=field,
        ) from None


def required_uuid(value: str, field: str) -> uuid.UUID:
    parsed = parse_uuid(value, field)
    assert parsed is not None
    return parsed


def account_type(value: pb.AccountType) -> AccountType:
    try:
        return _ACCOUNT_TYPES[value]
    except KeyError:
        raise InvalidRequest(
            "type must be CUSTOMER, SETTLEMENT or INTERNAL", field="type"
        ) from None


def limits(request_limits: pb.AccountLimits, present: bool) -> Limits | None:
    if not present:
        return None
    return Limits(
        debits_must_not_exceed_credits=request_limits.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=request_limits.credits_must_not_exceed_debits,
        overdraft_limit=request_limits.overdraft_limit_minor_units,
    )


def new_transfer(
    t: pb.NewTransfer, field: str = "transfer", origin: Origin | None = None
) -> NewTransfer:
    kind = _KINDS.get(t.kind)
    if kind is None:
        raise InvalidRequest(
            "kind must be SINGLE_PHASE, PENDING, POST_PENDING or VOID_PENDING",
            field=f"{field}.kind",
        )
    has_amount = t.HasField("amount")
    return NewTransfer(
        id=required_uuid(t.transfer_id, f"{field}.transfer_id"),
        kind=kind,
        debit_account_id=parse_uuid(
            t.debit_account_id, f"{field}.debit_account_id", required=False
        ),
        credit_account_id=parse_uuid(
            t.credit_account_id, f"{field}.credit_account_id", required=False
        ),
        amount=t.amount.minor_units if has_amount else None,
        currency=(t.amount.currency_code or None) if has_amount else None,
        pending_id=parse_uuid(t.pending_id, f"{field}.pending_id", required=False),
        timeout_seconds=t.timeout_seconds,
        code=t.code,
        metadata=tuple(sorted(t.metadata.items())),
        linked=t.linked,
        requested_by=origin,
    )


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


# -- outputs -----------------------------------------------------------------------


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def money(minor_units: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(minor_units=minor_units, currency_code=currency)


def balances(b: Balances) -> pb.Balances:
    return pb.Balances(
        currency_code=b.currency,
        debits_posted=b.debits_posted,
        credits_posted=b.credits_posted,
        debits_pending=b.debits_pending,
        credits_pending=b.credits_pending,
        posted=money(b.posted, b.currency),
        available=money(b.available, b.currency),
    )


def account(a: Account) -> pb.Account:
    return pb.Account(
        account_id=str(a.id),
        customer_id=a.customer_id,
        currency_code=a.currency,
        type=_ACCOUNT_TYPES_PB[a.type],
        status=_STATUSES_PB[a.status],
        limits=pb.AccountLimits(
            debits_must_not_exceed_credits=a.limits.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=a.limits.credits_must_not_exceed_debits,
            overdraft_limit_minor_units=a.limits.overdraft_limit,
        ),
        metadata=a.metadata,
        balances=balances(a.balances),
        create_time=_timestamp(a.created_at),
        update_time=_timestamp(a.updated_at),
    )


def transfer(t: Transfer) -> pb.Transfer:
    return pb.Transfer(
        transfer_id=str(t.id),
        debit_account_id=str(t.debit_account_id),
        credit_account_id=str(t.credit_account_id),
        amount=money(t.amount, t.currency),
        kind=_KINDS_PB[t.kind],
        pending_id=str(t.pending_id) if t.pending_id else "",
        timeout_seconds=t.timeout_seconds,
        code=t.code,
        metadata=t.metadata,
        create_time=_timestamp(t.created_at),
        expire_time=_timestamp(t.expires_at),
        pending_state=(
            _PENDING_STATES_PB[t.pending_state.value]
            if t.pending_state
            else pb.PENDING_STATE_UNSPECIFIED
        ),
    )


def transfer_result(r: TransferResult) -> svc.CreateTransferResult:
    return svc.CreateTransferResult(
        transfer_id=str(r.transfer_id),
        outcome=_OUTCOMES_PB[r.outcome],
        reason=f"ERROR_REASON_{r.reason.value}" if r.reason else "ERROR_REASON_UNSPECIFIED",
        transfer=transfer(r.transfer) if r.transfer else None,
    )


def entry(e: Entry) -> pb.Entry:
    currency = e.balances_after.currency
    return pb.Entry(
        sequence=e.sequence,
        transfer_id=str(e.transfer_id),
        account_id=str(e.account_id),
        kind=_KINDS_PB[e.kind],
        direction=(
            pb.ENTRY_DIRECTION_DEBIT if e.direction.value == "D" else pb.ENTRY_DIRECTION_CREDIT
        ),
        posted_amount=money(e.posted_delta, currency),
        pending_change=money(e.pending_delta, currency),
        balances_after=balances(e.balances_after),
        code=e.code,
        metadata=e.metadata,
        create_time=_timestamp(e.created_at),
    )
