"""The mesh policy: default deny, an entry for every method, and who may move money."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool

import bankmesh.account.v1.account_service_pb2
import bankmesh.identity.v1.identity_service_pb2
import bankmesh.payment.v1.payment_service_pb2
import bankmesh.risk.v1.risk_service_pb2  # noqa: F401 - registers the descriptors
from mesh.context import EndUser
from mesh.policy import Policy, PolicyError

SERVICES = [
    "bankmesh.account.v1.AccountService",
    "bankmesh.payment.v1.PaymentService",
    "bankmesh.risk.v1.RiskService",
    "bankmesh.identity.v1.IdentityService",
]
CUSTOMER = EndUser("u-1", "c-1", frozenset({"customer"}))
REVIEWER = EndUser("u-2", "", frozenset({"reviewer"}))


def every_method() -> list[str]:
    pool = descriptor_pool.Default()
    return [
        f"/{name}/{method.name}"
        for name in SERVICES
        for method in pool.FindServiceByName(name).methods
    ]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


@pytest.mark.parametrize("method", every_method())
def test_every_method_of_the_contracts_has_an_explicit_entry(policy: Policy, method: str) -> None:
    """Each RPC in protos/ is listed, so none is reachable merely by being forgotten."""
    assert method in policy.methods


def test_a_method_without_an_entry_is_refused_whoever_calls(policy: Policy) -> None:
    """Default deny: even the operator cannot call an unlisted method."""
    decision = policy.decide("/bankmesh.account.v1.AccountService/DropAllTables", "operator", None)
    assert not decision.allowed
    assert "default deny" in decision.reason


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [("payment", True), ("operator", True), ("risk", False), ("edge", False), ("identity", False)],
)
def test_only_payment_and_operators_move_money(policy: Policy, caller: str, allowed: bool) -> None:
    """CreateTransfer is open to payment and operators, closed to risk, edge and identity."""
    method = "/bankmesh.account.v1.AccountService/CreateTransfer"
    assert policy.decide(method, caller, None).allowed is allowed


def test_an_end_user_needs_one_of_the_methods_roles(policy: Policy) -> None:
    """A customer may read accounts through the edge but not approve a payment in review."""
    read = "/bankmesh.account.v1.AccountService/GetAccount"
    approve = "/bankmesh.payment.v1.PaymentService/ApprovePayment"
    assert policy.decide(read, "edge", CUSTOMER).allowed
    assert not policy.decide(approve, "edge", CUSTOMER).allowed
    assert policy.decide(approve, "edge", REVIEWER).allowed


def test_only_listed_issuers_may_act_for_end_users(policy: Policy) -> None:
    """Risk cannot smuggle a customer into a call: it is not an assertion issuer."""
    method = "/grpc.health.v1.Health/Check"
    assert policy.decide(method, "risk", None).allowed
    assert not policy.decide(method, "risk", CUSTOMER).allowed


def test_a_method_for_signed_in_users_refuses_calls_without_one(policy: Policy) -> None:
    """GetCurrentUser means nothing without a user: a bare service call is refused."""
    method = "/bankmesh.identity.v1.IdentityService/GetCurrentUser"
    assert not policy.decide(method, "edge", None).allowed
    assert policy.decide(method, "edge", CUSTOMER).allowed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2}, "version must be 1"),
        ({"version": 1, "methods": {"NoSlash": {}}}, "/package.Service/Method"),
        (
            {"version": 1, "methods": {"/a.B/C": {"callers": ["mallory"], "end_user_roles": []}}},
            r"unknown \['mallory'\]",
        ),
        (
            {"version": 1, "methods": {"/a.B/C": {"callers": [], "end_user_roles": ["god"]}}},
            r"unknown \['god'\]",
        ),
        (
            {"version": 1, "methods": {"/a.B/C": {"callers": [], "roles": []}}},
            "unknown keys",
        ),
        ({"version": 1, "methods": {"/a.B/C": {"callers": []}}}, "are required"),
    ],
)
def test_a_malformed_policy_fails_at_load_with_the_entry_named(
    data: dict[str, Any], message: str
) -> None:
    """Mistakes in the policy stop start-up with a message that says where."""
    with pytest.raises(PolicyError, match=message):
        Policy.parse(data)
