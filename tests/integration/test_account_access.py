"""Object-level access in the ledger: a customer sees and opens only their own accounts."""

from __future__ import annotations

import uuid

import pytest

from services.account.domain.errors import AccountNotFound, PermissionDenied
from services.account.domain.model import AccountType, Limits, Viewer
from services.account.service_layer.ledger import Ledger, OpenAccount


@pytest.fixture
async def accounts(ledger: Ledger) -> tuple[str, uuid.UUID, str, uuid.UUID]:
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    a, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, alice))
    b, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, bob))
    return alice, a.id, bob, b.id


async def test_a_customer_reads_their_own_account(
    ledger: Ledger, accounts: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    """Alice's own account, statement and balance are hers to read."""
    alice, alice_account, _, _ = accounts
    viewer = Viewer(alice)
    assert (await ledger.get_account(alice_account, viewer)).customer_id == alice
    await ledger.list_entries(alice_account, 10, "", viewer)
    await ledger.balance_at(alice_account, None, viewer)


async def test_another_customers_account_looks_like_it_does_not_exist(
    ledger: Ledger, accounts: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    """Bob's account id gives Alice ACCOUNT_NOT_FOUND on every read, as a random id would."""
    alice, _, _, bob_account = accounts
    viewer = Viewer(alice)
    with pytest.raises(AccountNotFound) as theirs:
        await ledger.get_account(bob_account, viewer)
    random_id = uuid.uuid4()
    with pytest.raises(AccountNotFound) as missing:
        await ledger.get_account(random_id, viewer)
    assert str(theirs.value) == f"account {bob_account} does not exist"
    assert str(missing.value) == f"account {random_id} does not exist"
    with pytest.raises(AccountNotFound):
        await ledger.list_entries(bob_account, 10, "", viewer)
    with pytest.raises(AccountNotFound):
        await ledger.balance_at(bob_account, None, viewer)


async def test_a_customer_lists_only_their_own_accounts(
    ledger: Ledger, accounts: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    """Listing without a customer id means 'mine'; naming someone else is refused."""
    alice, alice_account, bob, _ = accounts
    page = await ledger.list_accounts("", 10, "", Viewer(alice))
    assert [a.id for a in page.items] == [alice_account]
    with pytest.raises(PermissionDenied):
        await ledger.list_accounts(bob, 10, "", Viewer(alice))


async def test_a_customer_opens_accounts_only_for_themselves(
    ledger: Ledger, accounts: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    """A customer cannot open an account for Bob, choose its id, or open settlement/overdraft."""
    alice, _, bob, _ = accounts
    viewer = Viewer(alice)
    opened, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER), viewer)
    assert opened.customer_id == alice
    for forbidden in (
        OpenAccount("EUR", AccountType.CUSTOMER, bob),
        # A chosen id would tell "created" from "exists": ids could be probed.
        OpenAccount("EUR", AccountType.CUSTOMER, account_id=uuid.uuid4()),
        OpenAccount("EUR", AccountType.SETTLEMENT),
        OpenAccount(
            "EUR",
            AccountType.CUSTOMER,
            limits=Limits(debits_must_not_exceed_credits=True, overdraft_limit=10**9),
        ),
    ):
        with pytest.raises(PermissionDenied):
            await ledger.open_account(forbidden, viewer)
