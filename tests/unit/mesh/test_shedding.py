"""Load shedding: listings go first, money movement last."""

from __future__ import annotations

import pytest

from mesh.interceptors.shedding import LoadSheddingInterceptor, Priority, priority_of


@pytest.mark.parametrize(
    ("method", "priority"),
    [
        ("/bankmesh.payment.v1.PaymentService/CreatePayment", Priority.CRITICAL),
        ("/bankmesh.account.v1.AccountService/CreateTransfer", Priority.CRITICAL),
        ("/bankmesh.identity.v1.IdentityService/Login", Priority.CRITICAL),
        ("/grpc.health.v1.Health/Check", Priority.CRITICAL),
        ("/bankmesh.account.v1.AccountService/GetAccount", Priority.NORMAL),
        ("/bankmesh.account.v1.AccountService/ListEntries", Priority.LOW),
        ("/bankmesh.payment.v1.PaymentService/ListPayments", Priority.LOW),
    ],
)
def test_methods_are_classed_by_what_a_customer_loses_if_refused(
    method: str, priority: Priority
) -> None:
    """Paying and signing in are critical; reads are normal; listings are low."""
    assert priority_of(method) is priority


def test_as_load_rises_low_then_normal_calls_are_refused_before_critical_ones() -> None:
    """At 50% of the limit listings stop, at 80% ordinary reads, at 100% everything."""
    shedder = LoadSheddingInterceptor(limit=10)
    admitted = []
    for in_flight in (0, 5, 8, 10):
        shedder.in_flight = in_flight
        admitted.append([p.name for p in Priority if shedder.admits(p)])
    assert admitted == [
        ["LOW", "NORMAL", "CRITICAL"],
        ["NORMAL", "CRITICAL"],
        ["CRITICAL"],
        [],
    ]
