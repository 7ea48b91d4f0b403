"""Through HTTPS, the edge, and mTLS to the real account and payment services."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.account.domain.model import AccountType, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount
from tests.integration.edge.conftest import EdgeMesh

pytestmark = pytest.mark.integration


async def customer_with_money(ledger: Ledger, customer: str, cents: int = 100_00) -> str:
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    account, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, customer))
    if cents == 0:
        return str(account.id)
    await ledger.create_transfer(
        NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, account.id, cents, "EUR")
    )
    return str(account.id)


def reason(body: dict[str, Any]) -> str:
    return str(body["details"][0]["reason"])


async def test_a_customer_lists_their_own_accounts(edge_mesh: EdgeMesh) -> None:
    """GET /v1/accounts with Alice's token lists Alice's accounts, with balances as JSON."""
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    account = await customer_with_money(edge_mesh.ledger, alice, 12_34)
    async with edge_mesh.client() as client:
        response = await client.get("/v1/accounts", headers=edge_mesh.as_customer(alice))
    assert response.status_code == 200, response.text
    accounts = response.json()["accounts"]
    assert [a["accountId"] for a in accounts] == [account]
    assert accounts[0]["customerId"] == alice
    assert accounts[0]["balances"]["posted"] == {"currencyCode": "EUR", "minorUnits": "1234"}
    assert accounts[0]["type"] == "ACCOUNT_TYPE_CUSTOMER"


async def test_a_customer_cannot_read_another_customers_account(edge_mesh: EdgeMesh) -> None:
    """Bob's account, asked for with Alice's token, is 404 ACCOUNT_NOT_FOUND, like a missing id."""
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    bobs = await customer_with_money(edge_mesh.ledger, bob)
    async with edge_mesh.client() as client:
        theirs = await client.get(f"/v1/accounts/{bobs}", headers=edge_mesh.as_customer(alice))
        missing = await client.get(
            f"/v1/accounts/{uuid.uuid4()}", headers=edge_mesh.as_customer(alice)
        )
        own = await client.get(f"/v1/accounts/{bobs}", headers=edge_mesh.as_customer(bob))
        listing = await client.get(
            "/v1/accounts", params={"customerId": bob}, headers=edge_mesh.as_customer(alice)
        )
    assert theirs.status_code == 404
    assert reason(theirs.json()) == "ACCOUNT_NOT_FOUND"
    assert (missing.status_code, reason(missing.json())) == (404, "ACCOUNT_NOT_FOUND")
    assert own.status_code == 200
    assert listing.status_code == 403


def payment_body(source: str, destination: str, cents: int = 25_50) -> dict[str, Any]:
    return {
        "sourceAccountId": source,
        "destinationAccountId": destination,
        "amount": {"currencyCode": "EUR", "minorUnits": str(cents)},
        "reference": "dinner",
        "clientContext": {"channel": "CHANNEL_MOBILE", "deviceId": "device-alice-phone"},
    }


async def test_a_payment_with_an_idempotency_key_is_created_once(edge_mesh: EdgeMesh) -> None:
    """POST /v1/payments with Idempotency-Key, twice: one payment and the same answer."""
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    source = await customer_with_money(edge_mesh.ledger, alice)
    destination = await customer_with_money(edge_mesh.ledger, bob, 0)
    body = payment_body(source, destination)
    headers = {**edge_mesh.as_customer(alice), "Idempotency-Key": str(uuid.uuid4())}
    async with edge_mesh.client() as client:
        first = await client.post("/v1/payments", json=body, headers=headers)
        retry = await client.post("/v1/payments", json=body, headers=headers)
        changed = await client.post(
            "/v1/payments", json={**body, "reference": "other"}, headers=headers
        )
    assert first.status_code == 200, first.text
    payment = first.json()["payment"]
    assert payment["amount"] == {"currencyCode": "EUR", "minorUnits": "2550"}
    assert payment["sourceAccountId"] == source
    assert payment["clientContext"]["ipAddress"] == "127.0.0.1"
    assert retry.status_code == 200
    assert retry.json()["payment"]["paymentId"] == payment["paymentId"]
    assert (changed.status_code, reason(changed.json())) == (400, "IDEMPOTENCY_KEY_REUSED")
    async with edge_mesh.client() as client:
        read = await client.get(
            f"/v1/payments/{payment['paymentId']}", headers=edge_mesh.as_customer(alice)
        )
    assert read.json()["payment"]["paymentId"] == payment["paymentId"]


async def test_a_customers_payment_through_the_edge_completes(edge_mesh: EdgeMesh) -> None:
    """A payment made with a customer's token moves the money, as an operator's does."""
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    source = await customer_with_money(edge_mesh.ledger, alice)
    destination = await customer_with_money(edge_mesh.ledger, bob, 0)
    headers = {**edge_mesh.as_customer(alice), "Idempotency-Key": str(uuid.uuid4())}
    async with edge_mesh.client() as client:
        response = await client.post(
            "/v1/payments", json=payment_body(source, destination), headers=headers
        )
    assert response.json()["payment"]["status"] == "PAYMENT_STATUS_COMPLETED"
    assert (await edge_mesh.ledger.get_account(uuid.UUID(source))).balances.posted == 74_50


async def test_a_customer_cannot_pay_from_someone_elses_account(edge_mesh: EdgeMesh) -> None:
    """Bob naming Alice's account as the source is refused and nothing moves."""
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    source = await customer_with_money(edge_mesh.ledger, alice)
    destination = await customer_with_money(edge_mesh.ledger, bob, 0)
    body = {
        "idempotencyKey": str(uuid.uuid4()),
        "sourceAccountId": source,
        "destinationAccountId": destination,
        "amount": {"currencyCode": "EUR", "minorUnits": "100"},
    }
    async with edge_mesh.client() as client:
        response = await client.post("/v1/payments", json=body, headers=edge_mesh.as_customer(bob))
    assert 400 <= response.status_code < 500
    assert (await edge_mesh.ledger.get_account(uuid.UUID(source))).balances.posted == 100_00


async def test_a_customer_cannot_freeze_accounts_through_the_edge(edge_mesh: EdgeMesh) -> None:
    """The policy's roles hold for REST clients too: a customer's freeze is 403."""
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    account = await customer_with_money(edge_mesh.ledger, alice)
    async with edge_mesh.client() as client:
        response = await client.post(
            f"/v1/accounts/{account}:freeze",
            json={"reason": "x"},
            headers=edge_mesh.as_customer(alice),
        )
    assert (response.status_code, reason(response.json())) == (403, "PERMISSION_DENIED")


async def test_readyz_asks_the_services_behind_the_edge(edge_mesh: EdgeMesh) -> None:
    """With account and payment serving and keys loaded, /readyz is 200 and says so."""
    async with edge_mesh.client() as client:
        response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {
        "account": "SERVING",
        "payment": "SERVING",
        "jwks": "1 keys",
    }
