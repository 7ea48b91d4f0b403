"""Object-level access through the edge: customer A with customer B's ids, on every route.

The matrix is generated, never listed by hand: every route in mesh.edge's
route table (the google.api.http annotations of the protos) whose request
has a field naming an object, `OBJECT_FIELDS`, gives one case per such
field. Alice (A) calls the route with that field set to Bob's (B) object and
everything else valid and her own; the answer must be 404 (NOT_FOUND, as
for an id nobody has) or 403 (PERMISSION_DENIED), never 2xx, never anything
else. For the routes that read, the same call with Alice's own object must
answer 200, so a refusal is about whose object it is, not a broken request.
Afterwards Bob's account, payment, customer record, sign-in and roles are
exactly as before.

`destination_account_id` is not an object the caller acts on: paying into
someone else's account is what a payment is for, so it is not in the matrix.

A case in `KNOWN_GAPS` is a hole found by this matrix in a service's code;
it is expected to fail (strictly: once it is fixed, the marker must go).

The mesh is the one `bankmesh up` runs (`launched_mesh`: every default
service as its own process, embedded PostgreSQL and Redis), seeded by
`bankmesh demo`'s code.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from bankmesh.account.v1 import account_pb2
from bankmesh.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from bankmesh.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from mesh.edge.routes import Route, bankmesh_services, load_routes
from mesh.operator import Operator, operator_channel
from mesh.runtime.demo import DEMO_PASSWORD, Demo, seed_demo
from tests.e2e.test_https_walkthrough import launched_mesh

pytestmark = pytest.mark.integration

# Request fields that name an object the caller reads or acts on, and its kind.
OBJECT_FIELDS = {
    "account_id": "account",
    "source_account_id": "account",
    "payment_id": "payment",
    "customer_id": "customer",
    "user_id": "user",
}

# Path variables that are not objects, and a valid value for them.
PATH_VALUES = {"role": "ROLE_CUSTOMER"}


@dataclass(frozen=True)
class Case:
    route: Route
    field: str  # the object field set to B's id

    @property
    def kind(self) -> str:
        return OBJECT_FIELDS[self.field]

    @property
    def label(self) -> str:
        return f"{self.route.http_method} {self.route.template.text} {self.field}"


def matrix() -> list[Case]:
    """One case per route and object field of its request, from the edge's route table."""
    table = load_routes(bankmesh_services())
    return [
        Case(route, name)
        for route in sorted(table.routes, key=lambda r: (r.template.text, r.http_method))
        for name in route.input.fields_by_name
        if name in OBJECT_FIELDS
    ]


CASES = matrix()

KNOWN_GAPS: dict[str, str] = {}


def _param(case: Case) -> object:
    gap = KNOWN_GAPS.get(case.label)
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(case, id=case.label, marks=marks)


@dataclass
class Party:
    """A signed-in customer and the objects that are theirs."""

    token: str
    objects: dict[str, str]  # kind -> id


@dataclass
class World:
    demo: Demo
    data_dir: Path
    alice: Party
    bob: Party
    payee_account: str  # Carol's: someone else's, so neither's payment shows to the other
    bobs_objects_before: bytes = b""

    def client(self) -> httpx.Client:
        trust = ssl.create_default_context(cafile=str(self.demo.ca_file))
        return httpx.Client(base_url=self.demo.edge_url, verify=trust, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: httpx.Client, email: str) -> tuple[str, str]:
    """The access token and the user id of ``email``'s demo sign-in."""
    answer = client.post("/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    assert answer.status_code == 200, answer.text
    token = str(answer.json()["tokens"]["accessToken"])
    me = client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    return token, str(me.json()["user"]["userId"])


def pay(client: httpx.Client, token: str, source: str, destination: str) -> str:
    answer = client.post(
        "/v1/payments",
        json={
            "sourceAccountId": source,
            "destinationAccountId": destination,
            "amount": {"currencyCode": "EUR", "minorUnits": "1000"},
            "reference": "bola",
        },
        headers={**bearer(token), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["payment"]["status"] == "PAYMENT_STATUS_COMPLETED", answer.text
    return str(answer.json()["payment"]["paymentId"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with launched_mesh(tmp_path_factory.mktemp("bola")) as data_dir:
        demo = seed_demo(data_dir)
        with Operator(data_dir) as operator:
            carol = operator.open_account(
                f"carol-{uuid.uuid4().hex[:8]}", "EUR", account_pb2.ACCOUNT_TYPE_CUSTOMER
            ).account_id
        parties = {}
        trust = ssl.create_default_context(cafile=str(demo.ca_file))
        with httpx.Client(base_url=demo.edge_url, verify=trust, timeout=30) as client:
            for key in ("alice", "bob"):
                customer = demo.customer(key)
                token, user_id = sign_in(client, customer.email)
                payment = pay(client, token, customer.account_id, carol)
                parties[key] = Party(
                    token,
                    {
                        "account": customer.account_id,
                        "payment": payment,
                        "customer": customer.customer_id,
                        "user": user_id,
                    },
                )
        world = World(demo, data_dir, parties["alice"], parties["bob"], carol)
        world.bobs_objects_before = snapshot(world)
        yield world


def request_for(case: Case, world: World, owner: Party) -> tuple[str, str, dict[str, Any]]:
    """Method, path and httpx arguments of Alice's call with ``owner``'s object in ``case.field``."""
    route, mine = case.route, world.alice.objects

    def value(field: str) -> str:
        if field == case.field:
            return owner.objects[case.kind]
        if field in OBJECT_FIELDS:
            return mine[OBJECT_FIELDS[field]]
        return PATH_VALUES[field]

    path = re.sub(
        r"\{([a-z_.]+)(=[^}]*)?\}",
        lambda found: value(found.group(1)),
        route.template.text,
    )
    fields = base_fields(route, world)
    if case.field not in route.path_fields:
        fields[route.input.fields_by_name[case.field].json_name] = owner.objects[case.kind]
    arguments: dict[str, Any] = {"headers": bearer(world.alice.token)}
    if route.body == "*":
        arguments["json"] = fields
    elif fields:
        arguments["params"] = fields
    return route.http_method, path, arguments


def base_fields(route: Route, world: World) -> dict[str, Any]:
    """The rest of a valid request of Alice's, by method: money, keys, reasons."""
    mine = world.alice.objects
    by_method: dict[str, dict[str, Any]] = {
        "OpenAccount": {"currencyCode": "EUR", "type": "ACCOUNT_TYPE_CUSTOMER"},
        "CreatePayment": {
            "sourceAccountId": mine["account"],
            "destinationAccountId": world.payee_account,
            "amount": {"currencyCode": "EUR", "minorUnits": "100"},
            "idempotencyKey": str(uuid.uuid4()),
        },
        "RefundPayment": {"idempotencyKey": str(uuid.uuid4())},
        "FreezeAccount": {"reason": "bola"},
        "UnfreezeAccount": {"reason": "bola"},
        "CloseAccount": {"reason": "bola"},
        "ApprovePayment": {"note": "bola"},
        "RejectPayment": {"note": "bola"},
        "AssignRole": {"role": "ROLE_ADMIN"},
    }
    return dict(by_method.get(route.method.name, {}))


def test_the_matrix_covers_every_route_that_takes_an_object_id() -> None:
    """Accounts, payments, customers and users: each id-taking route of the table is a case."""
    labels = {case.label for case in CASES}
    assert "GET /v1/accounts/{account_id} account_id" in labels
    assert "POST /v1/payments source_account_id" in labels
    assert "GET /v1/customers/{customer_id} customer_id" in labels
    assert "DELETE /v1/users/{user_id}/roles/{role} user_id" in labels
    assert {case.kind for case in CASES} == {"account", "payment", "customer", "user"}
    assert len(CASES) == len(labels) >= 18
    assert set(KNOWN_GAPS) <= labels


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_customer_a_is_refused_customer_bs_object(case: Case, world: World) -> None:
    """404 or 403 with B's id, never 2xx; a read with A's own id answers 200."""
    method, path, arguments = request_for(case, world, world.bob)
    with world.client() as client:
        answer = client.request(method, path, **arguments)
        assert answer.status_code in (403, 404), (
            f"{case.label}: Alice with Bob's {case.kind} got {answer.status_code}: {answer.text}"
        )
        reason = answer.json()["details"][0]["reason"]
        if answer.status_code == 403:
            assert reason == "PERMISSION_DENIED", answer.text
        else:
            assert reason.endswith("_NOT_FOUND") or reason == "INVALID_ID", answer.text
        if method == "GET":
            method, path, arguments = request_for(case, world, world.alice)
            own = client.request(method, path, **arguments)
            assert own.status_code == 200, f"{case.label} with Alice's own id: {own.text}"


def test_customer_bs_objects_are_unchanged_after_the_matrix(world: World) -> None:
    """Bob's account, payment, customer record, accounts list and roles are as they were."""
    assert snapshot(world) == world.bobs_objects_before
    with world.client() as client:
        me = client.get("/v1/me", headers=bearer(world.bob.token))
    assert me.status_code == 200, me.text  # his session was not ended either
    assert me.json()["user"]["roles"] == ["ROLE_CUSTOMER"]


def snapshot(world: World) -> bytes:
    """Bob's objects as the operator reads them, serialized for an exact comparison."""
    bob = world.bob.objects
    with Operator(world.data_dir) as operator:
        parts = [operator.get_account(bob["account"]).SerializeToString(deterministic=True)]
        listed = operator.list_accounts(world.demo.customer("bob").customer_id)
        parts += [account.SerializeToString(deterministic=True) for account in listed]
    payments = operator_channel("payment", world.data_dir)
    identity = operator_channel("identity", world.data_dir)
    try:
        payment = payment_service_pb2_grpc.PaymentServiceStub(payments).GetPayment(
            payment_service_pb2.GetPaymentRequest(payment_id=bob["payment"]), timeout=10
        )
        customer = identity_service_pb2_grpc.IdentityServiceStub(identity).GetCustomer(
            identity_service_pb2.GetCustomerRequest(customer_id=bob["customer"]), timeout=10
        )
    except grpc.RpcError as exc:
        pytest.fail(f"the operator cannot read Bob's objects: {exc}")
    finally:
        payments.close()
        identity.close()
    parts += [
        payment.SerializeToString(deterministic=True),
        customer.SerializeToString(deterministic=True),
    ]
    return b"\x00".join(parts)
