"""The bank the chaos run exercises: accounts, payers and readers.

Setup (``Bank.open``), as the operator over mTLS and through the proxies:
one customer is registered with identity (so the workload can also sign in
at the edge), ``accounts`` EUR customer accounts are opened for them with
ids derived from the run, and each is funded from the settlement account
with a transfer of a derived id. Every account belongs to that one customer
on purpose: then one ``ListAccounts`` (gRPC) or ``GET /v1/accounts`` (REST)
reads every balance in a single query, a consistent snapshot, and each
read can be held to the bank's totals.

Payers (``pay_forever``) each make one payment at a time between two random
accounts, over gRPC (as the operator) or the REST edge (as the customer).
The idempotency key is chosen before the first try and kept for every retry;
a try that times out or meets UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
RESOURCE_EXHAUSTED, INTERNAL, HTTP 409/429/5xx or a dropped connection is
retried with the same key, after Retry-After when one is given, until the
intent's time budget runs out. Some acknowledged payments are sent again on
purpose: the answer must name the same payment. ``settle`` retries every
intent never acknowledged, with its key, once the faults have stopped.

Readers (``read_forever``) read all balances and check each read at once:
the customers' posted balances add up to what was funded and their pending
amounts to zero (the settlement account, read too, holds the opposite, so
the bank's total is zero), and no account is below its limit (no overdraft:
debits posted plus pending never exceed credits posted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import httpx
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import context_pb2, money_pb2, pagination_pb2
from bankmesh.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from bankmesh.payment.v1 import payment_pb2, payment_service_pb2, payment_service_pb2_grpc
from chaos.cluster import CLIENT, ChaosMesh
from chaos.history import History, Intent
from mesh.errors import error_info
from mesh.operator import settlement_account_id
from mesh.tls import RotatingChannel

if TYPE_CHECKING:
    from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceAsyncStub
    from bankmesh.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub
    from bankmesh.payment.v1.payment_service_pb2_grpc import PaymentServiceAsyncStub

CURRENCY = "EUR"
NAMESPACE = uuid.UUID("0c9d2a51-6f4e-4b8a-9d3c-5e7f1a2b3c4d")
CALL_TIMEOUT = 5.0
SETUP_TIMEOUT = 60.0

_RETRIED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
_RETRIED_HTTP = frozenset({409, 429, 500, 502, 503, 504})
# Quick reconnects: the harness's clients should find a restarted service at
# once; the services themselves keep gRPC's defaults, which is what is measured.
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class SetupFailed(Exception):
    """The bank could not be opened on the mesh."""


class _Retry(Exception):
    """One try failed in a way worth retrying with the same key."""

    def __init__(self, outcome: str, wait: float = 0.0) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.wait = wait


class _Refused(Exception):
    """The service refused the request for good (a 4xx, INVALID_ARGUMENT, ...)."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reason = reason


@dataclass(frozen=True)
class _Answer:
    payment_id: str
    status: str  # without the PAYMENT_STATUS_ prefix, as the payment service stores it


class Bank:
    """The accounts, the clients that reach them, and the history of what they saw."""

    def __init__(self, mesh: ChaosMesh, history: History, *, accounts: int, funding: int) -> None:
        self.mesh = mesh
        self.history = history
        self.run = secrets.token_hex(4)
        self.account_ids = [
            str(uuid.uuid5(NAMESPACE, f"{self.run}/account/{i}")) for i in range(accounts)
        ]
        self.funding_ids = [
            str(uuid.uuid5(NAMESPACE, f"{self.run}/fund/{i}")) for i in range(accounts)
        ]
        self.funding = funding
        self.total = funding * accounts
        self.settlement_id = settlement_account_id(CURRENCY)
        self.customer_id = ""
        self.email = f"chaos-{self.run}@example.com"
        self.password = secrets.token_urlsafe(18)
        self._token = ""
        self._channels: dict[str, RotatingChannel] = {}
        self._http: httpx.AsyncClient | None = None

    # -- setup --------------------------------------------------------------------

    async def open(self) -> None:
        for service in ("account", "payment", "identity"):
            self._channels[service] = RotatingChannel(
                self.mesh.address(CLIENT, service),
                self.mesh.operator_identity(),
                service=service,
                check_interval=1.0,
                grace=5.0,
                options=_CHANNEL_OPTIONS,
            )
        trust = ssl.create_default_context(cafile=str(self.mesh.edge_ca()))
        self._http = httpx.AsyncClient(
            base_url=self.mesh.client_edge_url(),
            verify=trust,
            timeout=CALL_TIMEOUT + 1.0,
            limits=httpx.Limits(max_connections=32),
        )
        identity = await self._setup(self._register)
        self.customer_id = identity
        await self._setup(self._open_accounts)
        await self._setup(self._sign_in)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        if self._http is not None:
            await self._http.aclose()

    async def _setup(self, step: Callable[[], Awaitable[str]]) -> str:
        # The mesh has just started: its first calls may still meet a
        # service warming up, so setup retries for a while too.
        deadline = asyncio.get_running_loop().time() + SETUP_TIMEOUT
        while True:
            try:
                return await step()
            except (grpc.aio.AioRpcError, httpx.HTTPError, _Retry) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise SetupFailed(f"{step.__name__}: {exc}") from exc
                await asyncio.sleep(0.5)

    async def _register(self) -> str:
        request = identity_service_pb2.CreateCustomerRequest(
            full_name="Chaos Test Bank",
            email=self.email,
            phone_number="+4930000099",
            national_id=f"CHAOS{self.run}",
            password=self.password,
        )
        try:
            response = await self._identity().CreateCustomer(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.ALREADY_EXISTS:
                raise
            return self.customer_id  # a retry after a lost answer; set by then
        self.customer_id = response.customer.customer_id
        return self.customer_id

    async def _open_accounts(self) -> str:
        ledger = self._ledger()
        await ledger.OpenAccount(
            account_service_pb2.OpenAccountRequest(
                account_id=self.settlement_id,
                currency_code=CURRENCY,
                type=account_pb2.ACCOUNT_TYPE_SETTLEMENT,
            ),
            timeout=CALL_TIMEOUT,
        )
        for account_id, transfer_id in zip(self.account_ids, self.funding_ids, strict=True):
            await ledger.OpenAccount(
                account_service_pb2.OpenAccountRequest(
                    account_id=account_id,
                    customer_id=self.customer_id,
                    currency_code=CURRENCY,
                    type=account_pb2.ACCOUNT_TYPE_CUSTOMER,
                ),
                timeout=CALL_TIMEOUT,
            )
            # Derived ids make both idempotent: a retried setup opens and funds nothing twice.
            await ledger.CreateTransfer(
                account_service_pb2.CreateTransferRequest(
                    transfer=account_pb2.NewTransfer(
                        transfer_id=transfer_id,
                        debit_account_id=self.settlement_id,
                        credit_account_id=account_id,
                        amount=money_pb2.Money(minor_units=self.funding, currency_code=CURRENCY),
                        kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
                    )
                ),
                timeout=CALL_TIMEOUT,
            )
        return "opened"

    async def _sign_in(self) -> str:
        assert self._http is not None
        response = await self._http.post(
            "/v1/auth/login", json={"email": self.email, "password": self.password}
        )
        if response.status_code != 200:
            raise _Retry(f"HTTP_{response.status_code}")
        self._token = str(response.json()["tokens"]["accessToken"])
        return "signed in"

    # -- payers ---------------------------------------------------------------------

    async def pay_forever(
        self,
        channel: str,
        payer: int,
        stop: asyncio.Event,
        rng: random.Random,
        *,
        budget: float,
        duplicate_rate: float,
        max_intents: int,
    ) -> None:
        device = f"chaos-{channel}-{payer}"
        while not stop.is_set() and len(self.history.intents) < max_intents:
            source, destination = rng.sample(self.account_ids, 2)
            intent = Intent(
                key=str(uuid.uuid4()),
                channel=channel,
                source=source,
                destination=destination,
                amount=rng.randint(1, 2_000),
                created=self.history.now(),
            )
            self.history.intents.append(intent)
            await self.pay(intent, device, budget=budget)
            if intent.payment_id is not None and rng.random() < duplicate_rate:
                await self.resend(intent, device)

    async def pay(self, intent: Intent, device: str, *, budget: float) -> None:
        """Try ``intent`` with its key until acknowledged, refused, or ``budget`` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        backoff = 0.1
        while True:
            intent.attempts += 1
            began = self.history.now()
            try:
                answer = await self._try(intent, device)
            except _Retry as exc:
                self.history.attempt("pay", intent.channel, exc.outcome, began)
                intent.last_error = exc.outcome
                wait = max(exc.wait, backoff) * (0.5 + random.random())  # noqa: S311 - jitter
                if loop.time() + wait > deadline:
                    return
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, 1.0)
                continue
            except _Refused as exc:
                self.history.attempt("pay", intent.channel, exc.outcome, began)
                intent.refused = f"{exc.outcome} {exc.reason}".strip()
                if exc.reason == "IDEMPOTENCY_KEY_REUSED":
                    # The same key, the same parameters: the service must not say otherwise.
                    self.history.violate(
                        "key_reuse_refused", f"{intent.key} refused as reused on a retry"
                    )
                return
            self.history.attempt("pay", intent.channel, "OK", began)
            intent.payment_id, intent.status = answer.payment_id, answer.status
            intent.acknowledged_at = self.history.now()
            return

    async def resend(self, intent: Intent, device: str) -> None:
        """Send an acknowledged intent again with its key: the answer must name the same payment."""
        began = self.history.now()
        try:
            answer = await self._try(intent, device)
        except (_Retry, _Refused) as exc:
            self.history.attempt("pay", intent.channel, exc.outcome, began)
            return
        self.history.attempt("pay", intent.channel, "OK", began)
        intent.replays.append((answer.payment_id, answer.status))
        if answer.payment_id != intent.payment_id:
            self.history.violate(
                "retry_made_second_payment",
                f"key {intent.key}: first {intent.payment_id}, resend {answer.payment_id}",
            )

    async def settle(self, *, budget: float) -> None:
        """After the faults: retry every intent never acknowledged, with its own key and channel."""
        pending = [i for i in self.history.intents if i.payment_id is None and not i.refused]

        async def retry(intent: Intent) -> None:
            await self.pay(intent, f"chaos-{intent.channel}-settle", budget=budget)
            intent.resolved_late = intent.payment_id is not None

        limit = asyncio.Semaphore(8)

        async def bounded(intent: Intent) -> None:
            async with limit:
                await retry(intent)

        await asyncio.gather(*(bounded(i) for i in pending))

    async def _try(self, intent: Intent, device: str) -> _Answer:
        if intent.channel == "rest":
            return await self._try_rest(intent, device)
        request = payment_service_pb2.CreatePaymentRequest(
            idempotency_key=intent.key,
            source_account_id=intent.source,
            destination_account_id=intent.destination,
            amount=money_pb2.Money(minor_units=intent.amount, currency_code=CURRENCY),
            reference=f"chaos {intent.key[:8]}",
            client_context=context_pb2.ClientContext(device_id=device),
        )
        try:
            response = await self._payments().CreatePayment(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from None
        payment = response.payment
        return _Answer(payment.payment_id, payment_pb2.PaymentStatus.Name(payment.status)[15:])

    async def _try_rest(self, intent: Intent, device: str) -> _Answer:
        assert self._http is not None
        body = {
            "sourceAccountId": intent.source,
            "destinationAccountId": intent.destination,
            "amount": {"currencyCode": CURRENCY, "minorUnits": str(intent.amount)},
            "reference": f"chaos {intent.key[:8]}",
            "clientContext": {"deviceId": device},
        }
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": intent.key,
            "X-Request-Timeout": str(CALL_TIMEOUT),
        }
        response = await self._http_call("POST", "/v1/payments", json=body, headers=headers)
        payment = response.json()["payment"]
        status = str(payment["status"]).removeprefix("PAYMENT_STATUS_")
        return _Answer(str(payment["paymentId"]), status)

    async def _http_call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise _Retry("TIMEOUT") from None
        except httpx.HTTPError as exc:
            raise _Retry(type(exc).__name__) from None
        if response.status_code == 200:
            return response
        reason = _http_reason(response)
        outcome = f"HTTP_{response.status_code}"
        if response.status_code in _RETRIED_HTTP:
            raise _Retry(outcome, _retry_after(response.headers.get("retry-after")))
        raise _Refused(outcome, reason)

    # -- readers ----------------------------------------------------------------------

    async def read_forever(self, channel: str, stop: asyncio.Event, pause: float) -> None:
        while not stop.is_set():
            await self.read_once(channel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def read_once(self, channel: str) -> bool:
        """Read every balance once and check the read; False when the read failed."""
        began = self.history.now()
        try:
            balances = await (self._read_rest() if channel == "rest" else self._read_grpc())
        except (_Retry, _Refused) as exc:
            self.history.attempt("read", channel, exc.outcome, began)
            return False
        self.history.attempt("read", channel, "OK", began)
        self.check_read(balances, channel)
        return True

    async def _read_grpc(self) -> dict[str, tuple[int, int, int, int]]:
        ledger = self._ledger()
        try:
            listed = await ledger.ListAccounts(
                account_service_pb2.ListAccountsRequest(
                    customer_id=self.customer_id, page=pagination_pb2.PageRequest(page_size=500)
                ),
                timeout=CALL_TIMEOUT,
            )
            settlement = await ledger.GetAccount(
                account_service_pb2.GetAccountRequest(account_id=self.settlement_id),
                timeout=CALL_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from None
        balances = {a.account_id: _counters(a.balances) for a in listed.accounts}
        balances[self.settlement_id] = _counters(settlement.account.balances)
        return balances

    async def _read_rest(self) -> dict[str, tuple[int, int, int, int]]:
        response = await self._http_call(
            "GET",
            "/v1/accounts",
            params={"page.pageSize": "500"},
            headers={"Authorization": f"Bearer {self._token}"},
        )
        balances: dict[str, tuple[int, int, int, int]] = {}
        for account in response.json()["accounts"]:
            b = account["balances"]
            balances[str(account["accountId"])] = (
                int(b["debitsPosted"]),
                int(b["creditsPosted"]),
                int(b["debitsPending"]),
                int(b["creditsPending"]),
            )
        return balances

    def check_read(self, balances: dict[str, tuple[int, int, int, int]], channel: str) -> None:
        """Hold one snapshot of balances to the bank's invariants; record each broken one."""
        self.history.reads_checked += 1
        customers = {k: v for k, v in balances.items() if k != self.settlement_id}
        missing = set(self.account_ids) - set(customers)
        if missing:
            self.history.violate("read_missing_accounts", f"{channel}: {len(missing)} missing")
        posted = sum(cp - dp for dp, cp, _, _ in customers.values())
        pending = sum(cq - dq for _, _, dq, cq in customers.values())
        if posted != self.total:
            self.history.violate(
                "total_not_conserved", f"{channel}: customers hold {posted}, funded {self.total}"
            )
        if pending != 0:
            self.history.violate("pending_not_balanced", f"{channel}: pending sum {pending}")
        if self.settlement_id in balances:
            dp, cp, dq, cq = balances[self.settlement_id]
            if posted + (cp - dp) != 0 or pending + (cq - dq) != 0:
                self.history.violate(
                    "total_not_conserved",
                    f"{channel}: bank total {posted + cp - dp} posted, {pending + cq - dq} pending",
                )
        for account_id, (dp, cp, dq, _) in customers.items():
            if dp + dq > cp:
                self.history.violate(
                    "balance_below_limit",
                    f"{channel}: {account_id} debits {dp}+{dq} over credits {cp}",
                )

    # -- stubs ----------------------------------------------------------------------

    def _ledger(self) -> AccountServiceAsyncStub:
        return account_service_pb2_grpc.AccountServiceStub(self._channels["account"].channel())

    def _payments(self) -> PaymentServiceAsyncStub:
        return payment_service_pb2_grpc.PaymentServiceStub(self._channels["payment"].channel())

    def _identity(self) -> IdentityServiceAsyncStub:
        return identity_service_pb2_grpc.IdentityServiceStub(self._channels["identity"].channel())


def _counters(balances: account_pb2.Balances) -> tuple[int, int, int, int]:
    return (
        balances.debits_posted,
        balances.credits_posted,
        balances.debits_pending,
        balances.credits_pending,
    )


def _rpc_error(exc: grpc.aio.AioRpcError) -> _Retry | _Refused:
    code = exc.code()
    if code in _RETRIED:
        # (key, value) pairs at run time, whatever the stubs call them.
        pairs: Iterable[tuple[str, Any]] = exc.trailing_metadata() or ()  # type: ignore[assignment]
        values = [v for k, v in pairs if k == "retry-after"]
        value = values[0] if values and isinstance(values[0], str) else None
        return _Retry(code.name, _retry_after(value))
    return _Refused(code.name, _grpc_reason(exc))


def _grpc_reason(exc: grpc.aio.AioRpcError) -> str:
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        return ""
    info = error_info(status) if status is not None else None
    return info.reason if info is not None else ""


def _http_reason(response: httpx.Response) -> str:
    try:
        details = response.json().get("details") or [{}]
        return str(details[0].get("reason", ""))
    except (ValueError, AttributeError, IndexError):
        return ""


def _retry_after(value: str | None) -> float:
    try:
        return min(float(value or 0), 5.0)
    except ValueError:
        return 0.0
