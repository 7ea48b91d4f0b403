"""``bankmesh demo``: two customers who can sign in at the edge, each with money to spend.

DEMO ONLY. The two sign-ins share one password that is printed on screen and
written in this file and the README: anyone who reads either can sign in as
them. Never run it against a mesh that holds real customers.

On a running mesh (``bankmesh up``), as the operator over mTLS:

1. waits until the edge answers ``GET /readyz`` (its services and token keys
   are ready), so every command printed afterwards works;
2. per demo customer: registers them with identity (``CreateCustomer``: their
   personal data, encrypted there, and a sign-in), opens a EUR customer
   account for them on the ledger, and deposits money into it from the
   settlement account, as ``bankmesh deposit`` does.

Running it again changes nothing. The account and deposit ids are derived
from the email (uuid5 of ``DEMO_NAMESPACE``), so they are the same on every
machine and every run: the ledger answers a repeated open or deposit with
the first one. A customer whose account exists is not registered again (the
account names them); one registered by an earlier run that stopped before
opening the account is found by signing in at the edge.

``walkthrough(demo)`` gives the curl commands of the README's walkthrough
with this mesh's URL, CA and ids filled in.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import money_pb2
from bankmesh.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from mesh.operator import CALL_TIMEOUT, Operator, RpcFailed, operator_channel, rpc_failure
from mesh.pki import CA_CERT, EDGE, identity_directory
from mesh.runtime.errors import MeshError
from mesh.runtime.status import local_url, read_endpoints

# Fixed forever: the demo's ids are derived from it (and printed in the README).
DEMO_NAMESPACE = uuid.UUID("5d7c2f3e-9b1a-4c6d-8e2f-0a1b2c3d4e5f")

# Printed in the clear on purpose: a demo sign-in for a local mesh, nothing else.
DEMO_PASSWORD = "bankmesh-demo-only"  # noqa: S105 - the published demo password
CURRENCY = "EUR"

# Signing in hashes with argon2id (64 MiB); identity may take a moment.
_HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class DemoPerson:
    """Who the demo registers: name, sign-in and how much money they start with."""

    key: str  # a short handle: alice, bob
    full_name: str
    email: str
    phone_number: str
    national_id: str
    deposit_minor_units: int

    @property
    def account_id(self) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, f"account/{self.email}"))

    @property
    def deposit_id(self) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, f"deposit/{self.email}"))


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("alice", "Alice Example", "alice@example.com", "+4930000001", "DEMO0001", 500_00),
    DemoPerson("bob", "Bob Example", "bob@example.com", "+4930000002", "DEMO0002", 250_00),
)


@dataclass(frozen=True)
class DemoCustomer:
    """A demo customer on the mesh: their ids, and whether this run registered them."""

    person: DemoPerson
    customer_id: str
    account_id: str
    registered_now: bool
    available_minor_units: int  # the account's available balance now

    @property
    def email(self) -> str:
        return self.person.email


@dataclass(frozen=True)
class Demo:
    """What ``seed_demo`` set up: where the edge is, whom it trusts, and the customers."""

    edge_url: str
    ca_file: Path  # the mesh CA, which signed the edge's certificate
    password: str
    customers: tuple[DemoCustomer, ...]

    def customer(self, key: str) -> DemoCustomer:
        return next(c for c in self.customers if c.person.key == key)


@dataclass(frozen=True)
class Command:
    """One step of the walkthrough: what it does, and the shell command."""

    title: str
    shell: str


def seed_demo(data_dir: Path, *, ready_timeout: float = 30.0) -> Demo:
    """Set up the demo customers on the mesh under ``data_dir`` (idempotently).

    Raises MeshError, with a hint, when no mesh runs there, it has no edge
    or identity, the edge does not become ready within ``ready_timeout``
    seconds, or a service refuses.
    """
    endpoints = read_endpoints(data_dir)
    missing = [name for name in ("account", "identity", EDGE) if not endpoints.addresses(name)]
    if missing:
        raise MeshError(
            f"the mesh in {data_dir} runs no {', '.join(missing)} "
            f"(it runs: {', '.join(sorted(endpoints.services)) or 'nothing'})",
            hint="the demo needs the whole mesh: restart it with `bankmesh up`",
        )
    urls = endpoints.urls_of(EDGE)
    if not urls:
        raise MeshError(
            f"endpoints.json in {data_dir} has no URL for the edge",
            hint="restart the mesh with `bankmesh up`; it rewrites the file",
        )
    edge = _Edge(local_url(urls[0]), identity_directory(Path(data_dir) / "pki", EDGE) / CA_CERT)
    edge.wait_ready(ready_timeout)
    customers = []
    with (
        Operator(data_dir) as operator,
        _closing(operator_channel("identity", data_dir)) as identity_channel,
        _closing(operator_channel("account", data_dir)) as account_channel,
    ):
        identity = identity_service_pb2_grpc.IdentityServiceStub(identity_channel)
        ledger = account_service_pb2_grpc.AccountServiceStub(account_channel)
        for person in PEOPLE:
            customers.append(_seed(person, operator, identity, ledger, edge, data_dir))
    return Demo(edge.url, edge.ca_file, DEMO_PASSWORD, tuple(customers))


def _seed(
    person: DemoPerson,
    operator: Operator,
    identity: identity_service_pb2_grpc.IdentityServiceStub,
    ledger: account_service_pb2_grpc.AccountServiceStub,
    edge: _Edge,
    data_dir: Path,
) -> DemoCustomer:
    registered_now = False
    account = _existing_account(operator, person.account_id)
    if account is not None:
        customer_id = account.customer_id
    else:
        customer_id, registered_now = _register(person, identity, edge, data_dir)
        request = account_service_pb2.OpenAccountRequest(
            account_id=person.account_id,
            customer_id=customer_id,
            currency_code=CURRENCY,
            type=account_pb2.ACCOUNT_TYPE_CUSTOMER,
        )
        with _rpc("account", data_dir):
            ledger.OpenAccount(request, timeout=CALL_TIMEOUT)
    settlement = operator.settlement_account(CURRENCY)
    deposit = account_service_pb2.CreateTransferRequest(
        transfer=account_pb2.NewTransfer(
            # Derived, not random: a second run finds this deposit instead of paying again.
            transfer_id=person.deposit_id,
            debit_account_id=settlement.account_id,
            credit_account_id=person.account_id,
            amount=money_pb2.Money(minor_units=person.deposit_minor_units, currency_code=CURRENCY),
            kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
        )
    )
    with _rpc("account", data_dir):
        ledger.CreateTransfer(deposit, timeout=CALL_TIMEOUT)
    available = operator.get_account(person.account_id).balances.available.minor_units
    return DemoCustomer(person, customer_id, person.account_id, registered_now, available)


def _existing_account(operator: Operator, account_id: str) -> account_pb2.Account | None:
    try:
        return operator.get_account(account_id)
    except RpcFailed as exc:
        if exc.reason == "ACCOUNT_NOT_FOUND":
            return None
        raise


def _register(
    person: DemoPerson,
    identity: identity_service_pb2_grpc.IdentityServiceStub,
    edge: _Edge,
    data_dir: Path,
) -> tuple[str, bool]:
    """The customer id of ``person``, registering them when nobody signs in with their email."""
    request = identity_service_pb2.CreateCustomerRequest(
        full_name=person.full_name,
        email=person.email,
        phone_number=person.phone_number,
        national_id=person.national_id,
        password=DEMO_PASSWORD,
    )
    try:
        with _rpc("identity", data_dir):
            response = identity.CreateCustomer(request, timeout=CALL_TIMEOUT)
        return response.customer.customer_id, True
    except RpcFailed as exc:
        if exc.reason != "USER_ALREADY_EXISTS":
            raise
    # An earlier run registered them and stopped before opening the account.
    return edge.customer_id(person.email, DEMO_PASSWORD), False


@contextmanager
def _rpc(service: str, data_dir: Path) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        raise rpc_failure(exc, service=service, data_dir=data_dir) from None


@contextmanager
def _closing(channel: grpc.Channel) -> Iterator[grpc.Channel]:
    try:
        yield channel
    finally:
        channel.close()


class _Edge:
    """Just enough of an HTTPS client for the edge: the standard library, the mesh CA."""

    def __init__(self, url: str, ca_file: Path) -> None:
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise MeshError(
                f"the edge's URL {url!r} is not https://",
                hint="restart the mesh with `bankmesh up`",
            )
        self._host, self._port = parts.hostname, parts.port or 443
        try:
            self._tls = ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise MeshError(
                f"cannot read the mesh CA {ca_file}: {exc}",
                hint="restart the mesh with `bankmesh up`; it issues the certificates",
            ) from exc

    def request(
        self, method: str, path: str, body: object = None, token: str = ""
    ) -> tuple[int, dict[str, object]]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPSConnection(
            self._host, self._port, timeout=_HTTP_TIMEOUT, context=self._tls
        )
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise MeshError(
                f"the edge at {self.url} did not answer {method} {path}: {exc}",
                hint="check `bankmesh status`; the edge's log is logs/edge.log",
            ) from exc
        finally:
            connection.close()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError:
            document = {}
        return response.status, document if isinstance(document, dict) else {}

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, document = self.request("GET", "/readyz")
            except MeshError as exc:  # not listening yet, or restarting
                status, document = 0, {"message": exc.message}
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise MeshError(
                    f"the edge at {self.url} is not ready after {timeout:.0f}s: "
                    f"{document.get('message') or f'HTTP {status}'}",
                    hint="check `bankmesh status`; the services' logs are in logs/",
                )
            time.sleep(0.25)

    def customer_id(self, email: str, password: str) -> str:
        """Sign in as ``email``, read their customer id, and sign out again."""
        status, document = self.request(
            "POST", "/v1/auth/login", {"email": email, "password": password}
        )
        tokens = document.get("tokens")
        if status != 200 or not isinstance(tokens, dict):
            raise MeshError(
                f"{email} is registered already but does not sign in with the demo password "
                f"(HTTP {status}: {document.get('message', '')})",
                hint="someone signed up with this email; run the demo on a fresh --data-dir",
            )
        access, refresh = str(tokens.get("accessToken", "")), str(tokens.get("refreshToken", ""))
        try:
            status, me = self.request("GET", "/v1/me", token=access)
        finally:
            self.request("POST", "/v1/auth/logout", {"refreshToken": refresh}, token=access)
        user = me.get("user")
        customer_id = user.get("customerId") if isinstance(user, dict) else None
        if status != 200 or not isinstance(customer_id, str) or not customer_id:
            raise MeshError(
                f"cannot read the customer id of {email} from the edge (HTTP {status})",
                hint="check the identity service's log, logs/identity.log",
            )
        return customer_id


# -- the walkthrough ------------------------------------------------------------------


def walkthrough(demo: Demo, *, idempotency_key: str = "alice-pays-bob-dinner") -> list[Command]:
    """The README's five curl commands, for this mesh: sign in, accounts, pay, statement, out.

    They run in bash or zsh with curl and jq, one after the other: the first
    keeps the sign-in's answer in ``$LOGIN`` and its access token in ``$TOKEN``.
    """
    alice, bob = demo.customer("alice"), demo.customer("bob")
    curl = f"curl -s --cacert {demo.ca_file} {demo.edge_url}"
    json_body = "-H 'Content-Type: application/json'"
    bearer = '-H "Authorization: Bearer $TOKEN"'
    status = "-w ' HTTP %{http_code}\\n'"
    login = json.dumps({"email": alice.email, "password": demo.password})
    amount = {"currencyCode": CURRENCY, "minorUnits": "2550"}
    # One member a line inside the quotes: whitespace, to JSON and to the shell.
    members = [
        f'"sourceAccountId": {json.dumps(alice.account_id)}',
        f'"destinationAccountId": {json.dumps(bob.account_id)}',
        f'"amount": {json.dumps(amount)}, "reference": "dinner"',
    ]
    payment = "{" + ",\n         ".join(members) + "}"
    more = " \\\n    "
    return [
        Command(
            "Sign in as Alice; her access token goes into $TOKEN",
            f"LOGIN=$({curl}/v1/auth/login{more}{json_body}{more}-d '{login}')\n"
            'TOKEN=$(jq -r .tokens.accessToken <<<"$LOGIN"); jq . <<<"$LOGIN"',
        ),
        Command("Her accounts, with their balances", f"{curl}/v1/accounts{more}{bearer} | jq ."),
        Command(
            "Pay Bob 25.50 (again with the same key: the same payment, paid once)",
            f"{curl}/v1/payments{more}{bearer} {json_body}"
            f"{more}-H 'Idempotency-Key: {idempotency_key}'"
            f"{more}-d '{payment}' | jq .",
        ),
        Command(
            "Her statement, newest entry first",
            f"{curl}/v1/accounts/{alice.account_id}/entries{more}{bearer} | jq .",
        ),
        Command(
            "Sign out: the session ends, and $TOKEN is refused from now on",
            f"{curl}/v1/auth/logout {status}{more}{bearer} {json_body}"
            f'{more}-d "$(jq \'{{refreshToken: .tokens.refreshToken}}\' <<<"$LOGIN")"\n'
            f"{curl}/v1/accounts {status}{more}{bearer}",
        ),
    ]
