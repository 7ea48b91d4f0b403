"""Connecting to a running mesh as the operator, from scripts and the CLI.

`bankmesh up` writes `<data_dir>/endpoints.json` with every service's
addresses and the operator's client certificate. `operator_channel("account")`
reads it and opens a channel with mutual TLS as
`spiffe://bankmesh.local/svc/operator`, which the mesh policy lets reach every
method an operator needs. A service with replicas is one channel over all of
their addresses, balanced round-robin, so a replica that is down is skipped.

`Operator` is what `bankmesh accounts`, `deposit` and `pay` do, as plain calls
that return protobuf messages: the CLI only renders them. A refusal comes back
as `RpcFailed`, a MeshError carrying the `ErrorInfo` reason the service sent
(INSUFFICIENT_FUNDS, ...), its message and a hint of what to try next.

Amounts typed by a person ("10.50") become integer minor units through
`parse_amount`, with `decimal.Decimal` and the currency's ISO 4217 exponent:
exactly, or not at all. Never through a float.

Deposits come from the mesh's settlement account for the currency, a
debit-normal account standing for money the bank holds elsewhere. Its id is
derived (uuid5 of `SETTLEMENT_NAMESPACE` and the currency code) and it is
opened with that id on first use, so every deposit in a currency, from any
terminal, uses the same account and opening it twice is harmless.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import TracebackType

import grpc
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import money_pb2, pagination_pb2
from bankmesh.payment.v1 import payment_pb2, payment_service_pb2, payment_service_pb2_grpc
from mesh.client import target_for
from mesh.errors import error_info
from mesh.runtime.errors import MeshError
from mesh.runtime.status import Endpoints, Transport, read_endpoints
from mesh.tls import channel_options
from services.common.money import INT64_MAX, MINOR_UNIT_EXPONENTS

DEFAULT_DATA_DIR = Path(".bankmesh")

# Fixed forever: changing it would give every currency a new, empty
# settlement account and strand the old one's history.
SETTLEMENT_NAMESPACE = uuid.UUID("8ed9e612-462b-4833-ba1f-89852f22106b")

# The ledger answers in milliseconds; a payment waits on risk and the ledger,
# with their retries, before it answers.
CALL_TIMEOUT = 10.0
PAYMENT_TIMEOUT = 30.0
STATEMENT_PAGE = 10
_LIST_PAGE = 100

# Digits with an optional fraction: no sign, exponent, separator or
# non-ASCII digit, each of which Decimal would otherwise accept.
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")


def operator_channel(service: str, data_dir: Path = DEFAULT_DATA_DIR) -> grpc.Channel:
    """A channel to every process of ``service``, as the operator; MeshError if none runs."""
    endpoints = read_endpoints(data_dir)
    addresses = endpoints.addresses(service)
    if not addresses:
        raise MeshError(
            f"the mesh in {data_dir} runs no {service} service "
            f"(it runs: {', '.join(sorted(endpoints.services)) or 'nothing'})",
            hint=_missing_service_hint(endpoints, data_dir),
        )
    transport = Transport.from_endpoints(endpoints.credentials)
    # Round-robin over the replicas (gRPC's default would stick to the first).
    options: list[tuple[str, object]] = [
        ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))
    ]
    target = target_for(addresses)
    if transport.credentials is None:
        return grpc.insecure_channel(target, options=options)
    options += channel_options(service, domain=transport.server_name_suffix)
    return grpc.secure_channel(target, transport.credentials, options=options)


def _missing_service_hint(endpoints: Endpoints, data_dir: Path) -> str:
    if not endpoints.complete:
        return "the mesh is still starting; try again once `bankmesh up` shows its table"
    return f"check `bankmesh status --data-dir {data_dir}`"


class AmountError(ValueError):
    """An amount a person typed that is not an exact, positive amount of the currency."""


def parse_amount(text: str, currency: str) -> int:
    """``"10.50"`` of EUR -> 1050: a decimal string to integer minor units, exactly.

    Refuses (AmountError) an unknown currency, anything but plain digits with
    an optional decimal point, zero, more than int64 minor units, and more
    decimal places than the currency has (trailing zeros aside: "10.500" EUR
    is 1050, "10.505" EUR has no exact answer).
    """
    exponent = MINOR_UNIT_EXPONENTS.get(currency)
    if exponent is None:
        raise AmountError(f"{currency!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
    written = text.strip()
    if written.startswith("-") and _AMOUNT.fullmatch(written[1:]):
        raise AmountError(
            f"the amount must be positive, got {written}; "
            "to move money the other way, swap the accounts"
        )
    if not _AMOUNT.fullmatch(written):
        raise AmountError(
            f"{text!r} is not an amount: write digits with an optional decimal point, "
            "like 10.50 (no sign, exponent or thousands separator)"
        )
    minor = Decimal(written).scaleb(exponent)
    if minor != minor.to_integral_value():
        places = "no decimal places" if exponent == 0 else f"at most {exponent} decimal places"
        raise AmountError(f"{currency} amounts have {places}; {written} is not one")
    units = int(minor)
    if units == 0:
        raise AmountError("the amount must be more than zero")
    if units > INT64_MAX:
        raise AmountError(f"{written} {currency} is more than the ledger can hold")
    return units


def settlement_account_id(currency: str) -> str:
    """The id of the mesh's settlement account for ``currency``: the same everywhere, always."""
    return str(uuid.uuid5(SETTLEMENT_NAMESPACE, currency))


class RpcFailed(MeshError):
    """A call that the service refused or that never got an answer.

    ``reason`` is the ErrorInfo reason (INSUFFICIENT_FUNDS, ...) when the
    service sent one, else the gRPC status code's name (UNAVAILABLE, ...).
    """

    def __init__(
        self, reason: str, message: str, *, code: grpc.StatusCode, hint: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}" if message else reason, hint=hint)
        self.reason = reason
        self.code = code
        self.detail = message


# What to try next, by reason: the mistakes an operator at a terminal makes.
_REASON_HINTS = {
    "ACCOUNT_NOT_FOUND": "check the account id: `bankmesh accounts list --customer C` lists them",
    "DEBIT_ACCOUNT_NOT_FOUND": "check the paying account's id (`bankmesh accounts list`)",
    "CREDIT_ACCOUNT_NOT_FOUND": "check the receiving account's id (`bankmesh accounts list`)",
    "INVALID_ID": "account ids are UUIDs, as `bankmesh accounts open` prints them",
    "INSUFFICIENT_FUNDS": (
        "the paying account has too little available: `bankmesh deposit ACCOUNT AMOUNT` adds "
        "money, `bankmesh accounts show ACCOUNT` shows its balance"
    ),
    "CURRENCY_MISMATCH": (
        "pass --currency with the accounts' currency (`bankmesh accounts show ACCOUNT` shows it)"
    ),
    "INVALID_CURRENCY": "use an ISO 4217 code such as EUR, USD or JPY",
    "ACCOUNTS_MUST_BE_DIFFERENT": "pay from one account to another",
    "ACCOUNT_FROZEN": "a frozen account neither sends nor receives; unfreeze it first",
    "ACCOUNT_CLOSED": "a closed account stays closed; use another account",
    "IDEMPOTENCY_KEY_REUSED": (
        "this --key was used for a different payment; leave --key out to make a new one"
    ),
    "IDEMPOTENCY_KEY_IN_USE": "the payment with this key is still running; retry in a moment",
    "PERMISSION_DENIED": (
        "the mesh refused the operator's certificate for this call; re-issue it with "
        "`bankmesh certs` or restart the mesh with `bankmesh up`"
    ),
    "UNAUTHENTICATED_PEER": (
        "the operator's certificate was not accepted: re-issue it with `bankmesh certs`"
    ),
    "DEPENDENCY_UNAVAILABLE": "a service it needs is down: check `bankmesh status`",
}


def hint_for(reason: str) -> str | None:
    """What to try next after a refusal or a failed payment with this reason, if we know."""
    return _REASON_HINTS.get(reason)


def rpc_failure(exc: grpc.RpcError, *, service: str, data_dir: Path) -> RpcFailed:
    """``exc`` as the operator should see it: reason, message, and a hint."""
    code = exc.code()
    message = exc.details() or ""
    try:
        # What a sync stub raises is also the finished grpc.Call, trailers and all.
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None  # details that contradict the call's own status: trust the call
    info = error_info(status) if status is not None else None
    reason = info.reason if info is not None and info.reason else code.name
    logs = data_dir / "logs"
    hint = _REASON_HINTS.get(reason)
    if hint is None:
        if code is grpc.StatusCode.UNAVAILABLE:
            hint = (
                f"could not reach the {service} service; is the mesh up? "
                f"`bankmesh status --data-dir {data_dir}` checks every service"
            )
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            hint = f"the {service} service did not answer in time; see its log in {logs}"
        elif code is grpc.StatusCode.INVALID_ARGUMENT:
            hint = "check the arguments (`--help` describes them)"
        else:
            hint = f"see the {service} service's log in {logs}"
    return RpcFailed(reason, message, code=code, hint=hint)


class Operator:
    """The operator's calls on the mesh under ``data_dir`` (sync gRPC, one channel per service)."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR) -> None:
        self.data_dir = data_dir
        self._channels: dict[str, grpc.Channel] = {}

    def __enter__(self) -> Operator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # -- accounts -------------------------------------------------------------

    def open_account(
        self, customer_id: str, currency: str, account_type: account_pb2.AccountType
    ) -> account_pb2.Account:
        request = account_service_pb2.OpenAccountRequest(
            customer_id=customer_id, currency_code=currency, type=account_type
        )
        with self._rpc("account"):
            return self._ledger().OpenAccount(request, timeout=CALL_TIMEOUT).account

    def list_accounts(self, customer_id: str) -> list[account_pb2.Account]:
        """All of a customer's accounts, every page."""
        accounts: list[account_pb2.Account] = []
        token = ""
        while True:
            request = account_service_pb2.ListAccountsRequest(
                customer_id=customer_id,
                page=pagination_pb2.PageRequest(page_size=_LIST_PAGE, page_token=token),
            )
            with self._rpc("account"):
                page = self._ledger().ListAccounts(request, timeout=CALL_TIMEOUT)
            accounts.extend(page.accounts)
            token = page.page.next_page_token
            if not token:
                return accounts

    def get_account(self, account_id: str) -> account_pb2.Account:
        request = account_service_pb2.GetAccountRequest(account_id=account_id)
        with self._rpc("account"):
            return self._ledger().GetAccount(request, timeout=CALL_TIMEOUT).account

    def latest_entries(
        self, account_id: str, limit: int = STATEMENT_PAGE
    ) -> list[account_pb2.Entry]:
        """The account's newest ``limit`` statement entries, newest first."""
        request = account_service_pb2.ListEntriesRequest(
            account_id=account_id, page=pagination_pb2.PageRequest(page_size=limit)
        )
        with self._rpc("account"):
            response = self._ledger().ListEntries(request, timeout=CALL_TIMEOUT)
        return list(response.entries)[:limit]

    # -- money ----------------------------------------------------------------

    def settlement_account(self, currency: str) -> account_pb2.Account:
        """The mesh's settlement account for ``currency``, opened on first use."""
        request = account_service_pb2.OpenAccountRequest(
            account_id=settlement_account_id(currency),
            currency_code=currency,
            type=account_pb2.ACCOUNT_TYPE_SETTLEMENT,
        )
        with self._rpc("account"):
            return self._ledger().OpenAccount(request, timeout=CALL_TIMEOUT).account

    def deposit(self, account_id: str, minor_units: int, currency: str) -> account_pb2.Transfer:
        """Credit ``account_id`` from the settlement account: one single-phase transfer."""
        settlement = self.settlement_account(currency)
        request = account_service_pb2.CreateTransferRequest(
            transfer=account_pb2.NewTransfer(
                # Fresh per deposit: each call is a new deposit, never a retry.
                transfer_id=str(uuid.uuid4()),
                debit_account_id=settlement.account_id,
                credit_account_id=account_id,
                amount=money_pb2.Money(minor_units=minor_units, currency_code=currency),
                kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
            )
        )
        with self._rpc("account"):
            return self._ledger().CreateTransfer(request, timeout=CALL_TIMEOUT).transfer

    def pay(self, request: payment_service_pb2.CreatePaymentRequest) -> payment_pb2.Payment:
        stub = payment_service_pb2_grpc.PaymentServiceStub(self._channel("payment"))
        with self._rpc("payment"):
            return stub.CreatePayment(request, timeout=PAYMENT_TIMEOUT).payment

    # -- plumbing -------------------------------------------------------------

    def _ledger(self) -> account_service_pb2_grpc.AccountServiceStub:
        return account_service_pb2_grpc.AccountServiceStub(self._channel("account"))

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            self._channels[service] = operator_channel(service, self.data_dir)
        return self._channels[service]

    @contextmanager
    def _rpc(self, service: str) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as exc:
            raise rpc_failure(exc, service=service, data_dir=self.data_dir) from None
