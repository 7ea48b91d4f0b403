"""Accounting stories, told against the real ledger on PostgreSQL.

Each test is one thing a bank does with the ledger (take a deposit, pay a
merchant, authorise a card and capture it later, close an account, print
a statement) and checks what the customer and the bank would see.
Amounts are minor units: 10000 EUR minor units are EUR 100.00.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest

from services.account.domain.errors import (
    AccountStateError,
    InvalidRequest,
    Reason,
    TransferNotFound,
    TransferRefused,
)
from services.account.domain.model import (
    Account,
    AccountStatus,
    AccountType,
    Balances,
    Direction,
    Limits,
    NewTransfer,
    PendingState,
    TransferKind,
)
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.money import INT64_MAX
from tests.support.clock import SteppingClock

# -- the cast -----------------------------------------------------------------------


async def open_bank(ledger: Ledger, currency: str = "EUR") -> Account:
    """The bank's settlement account: money it holds at the central bank."""
    account, _ = await ledger.open_account(OpenAccount(currency, AccountType.SETTLEMENT))
    return account


async def open_customer(
    ledger: Ledger, name: str, currency: str = "EUR", limits: Limits | None = None
) -> Account:
    account, _ = await ledger.open_account(
        OpenAccount(currency, AccountType.CUSTOMER, customer_id=name, limits=limits)
    )
    return account


def pay(
    debit: Account,
    credit: Account,
    amount: int,
    *,
    currency: str = "EUR",
    transfer_id: uuid.UUID | None = None,
    linked: bool = False,
) -> NewTransfer:
    return NewTransfer(
        transfer_id or uuid.uuid4(),
        TransferKind.SINGLE_PHASE,
        debit.id,
        credit.id,
        amount,
        currency,
        linked=linked,
    )


def authorise(
    debit: Account, credit: Account, amount: int, timeout_seconds: int = 0
) -> NewTransfer:
    return NewTransfer(
        uuid.uuid4(),
        TransferKind.PENDING,
        debit.id,
        credit.id,
        amount,
        "EUR",
        timeout_seconds=timeout_seconds,
    )


def capture(hold: NewTransfer, amount: int | None = None) -> NewTransfer:
    return NewTransfer(
        uuid.uuid4(), TransferKind.POST_PENDING, None, None, amount, None, pending_id=hold.id
    )


def release(hold: NewTransfer) -> NewTransfer:
    return NewTransfer(
        uuid.uuid4(), TransferKind.VOID_PENDING, None, None, None, None, pending_id=hold.id
    )


async def balances(ledger: Ledger, account: Account) -> Balances:
    return (await ledger.get_account(account.id)).balances


async def refusal(ledger: Ledger, request: NewTransfer) -> Reason:
    with pytest.raises(TransferRefused) as refused:
        await ledger.create_transfer(request)
    return refused.value.reason


async def funded_customer(ledger: Ledger, name: str, amount: int) -> tuple[Account, Account]:
    """A customer who has deposited `amount` at the bank, and the bank."""
    bank = await open_bank(ledger)
    customer = await open_customer(ledger, name)
    await ledger.create_transfer(pay(bank, customer, amount))
    return bank, customer


# -- deposits and payments ------------------------------------------------------------


async def test_a_deposit_shows_as_money_owed_to_the_customer_and_money_held_by_the_bank(
    ledger: Ledger,
) -> None:
    """Depositing EUR 100 credits the customer and debits settlement: both read +100.00."""
    bank = await open_bank(ledger)
    alice = await open_customer(ledger, "alice")
    deposit, existed = await ledger.create_transfer(pay(bank, alice, 10000))
    assert not existed and deposit.amount == 10000
    alice_now, bank_now = await balances(ledger, alice), await balances(ledger, bank)
    assert (alice_now.posted, alice_now.available) == (10000, 10000)
    assert (alice_now.credits_posted, alice_now.debits_posted) == (10000, 0)
    # Settlement is debit-normal: the bank holds the money, so its balance is positive too.
    assert (bank_now.posted, bank_now.debits_posted) == (10000, 10000)
    assert await ledger.get_transfer(deposit.id) == deposit


async def test_a_customer_pays_another_customer(ledger: Ledger) -> None:
    """Alice pays Bob EUR 25: her balance drops by exactly what his rises."""
    bank, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    payment, _ = await ledger.create_transfer(pay(alice, bob, 2500))
    assert (await balances(ledger, alice)).posted == 7500
    assert (await balances(ledger, bob)).posted == 2500
    assert (await balances(ledger, bank)).posted == 10000
    stored = await ledger.get_transfer(payment.id)
    assert (stored.debit_account_id, stored.credit_account_id) == (alice.id, bob.id)


async def test_a_payment_sent_twice_is_booked_once(ledger: Ledger) -> None:
    """A client retrying after a lost response gets EXISTS and the same transfer, not a second payment."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    payment = pay(alice, bob, 2500)
    first, existed_first = await ledger.create_transfer(payment)
    again, existed_again = await ledger.create_transfer(payment)
    assert (existed_first, existed_again) == (False, True)
    assert again == first
    assert (await balances(ledger, bob)).posted == 2500
    assert await refusal(ledger, pay(alice, bob, 2600, transfer_id=payment.id)) == (
        Reason.EXISTS_WITH_DIFFERENT_FIELDS
    )


async def test_an_overdraft_is_refused_changes_nothing_and_burns_the_transfer_id(
    ledger: Ledger,
) -> None:
    """Paying more than the balance is INSUFFICIENT_FUNDS; once refused, that id never succeeds."""
    bank, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    statement_before = await ledger.list_entries(alice.id, 0, "")
    too_much = pay(alice, bob, 10001)
    assert await refusal(ledger, too_much) == Reason.INSUFFICIENT_FUNDS
    assert (await balances(ledger, alice)).posted == 10000
    assert (await balances(ledger, bob)).posted == 0
    assert await ledger.list_entries(alice.id, 0, "") == statement_before
    with pytest.raises(TransferNotFound):
        await ledger.get_transfer(too_much.id)
    # More money arrives, but the retry of the refused transfer stays refused.
    await ledger.create_transfer(pay(bank, alice, 5000))
    assert await refusal(ledger, too_much) == Reason.ID_ALREADY_FAILED
    assert (await balances(ledger, bob)).posted == 0
    # The same payment under a new id goes through.
    await ledger.create_transfer(pay(alice, bob, 10001))
    assert (await balances(ledger, alice)).posted == 4999


async def test_an_agreed_overdraft_lets_a_customer_go_below_zero_up_to_the_limit(
    ledger: Ledger,
) -> None:
    """With an overdraft of EUR 50 the balance may reach -50.00 and not one cent below."""
    shop = await open_customer(ledger, "shop")
    carol = await open_customer(
        ledger, "carol", limits=Limits(debits_must_not_exceed_credits=True, overdraft_limit=5000)
    )
    await ledger.create_transfer(pay(carol, shop, 5000))
    assert (await balances(ledger, carol)).posted == -5000
    assert await refusal(ledger, pay(carol, shop, 1)) == Reason.INSUFFICIENT_FUNDS


async def test_a_treasury_account_with_a_huge_overdraft_can_be_paid_into(ledger: Ledger) -> None:
    """An overdraft limit near the bigint maximum does not stop credits or debits."""
    treasury = await open_customer(
        ledger,
        "treasury",
        limits=Limits(debits_must_not_exceed_credits=True, overdraft_limit=INT64_MAX),
    )
    bank = await open_bank(ledger)
    await ledger.create_transfer(pay(bank, treasury, 10000))
    await ledger.create_transfer(pay(treasury, bank, 25000))
    assert (await balances(ledger, treasury)).posted == -15000


async def test_a_purchase_and_its_fee_go_through_together_or_not_at_all(ledger: Ledger) -> None:
    """A linked payment and fee: when the fee cannot be paid, the payment is not made either."""
    _, alice = await funded_customer(ledger, "alice", 1000)
    shop = await open_customer(ledger, "shop")
    fees = await open_customer(ledger, "fees")
    results = await ledger.create_transfers(
        [pay(alice, shop, 990, linked=True), pay(alice, fees, 20)]
    )
    assert [r.reason for r in results] == [Reason.LINKED_EVENT_FAILED, Reason.INSUFFICIENT_FUNDS]
    assert (await balances(ledger, alice)).posted == 1000
    assert (await balances(ledger, shop)).posted == 0
    results = await ledger.create_transfers(
        [pay(alice, shop, 980, linked=True), pay(alice, fees, 20)]
    )
    assert [r.reason for r in results] == [None, None]
    assert (await balances(ledger, alice)).posted == 0
    assert (await balances(ledger, fees)).posted == 20


async def test_money_does_not_cross_currencies(ledger: Ledger) -> None:
    """EUR cannot be paid into a USD account, nor USD sent between EUR accounts."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    dollars = await open_customer(ledger, "dan", currency="USD")
    bob = await open_customer(ledger, "bob")
    assert await refusal(ledger, pay(alice, dollars, 100)) == Reason.CURRENCY_MISMATCH
    assert await refusal(ledger, pay(alice, dollars, 100, currency="USD")) == (
        Reason.CURRENCY_MISMATCH
    )
    assert await refusal(ledger, pay(alice, bob, 100, currency="USD")) == Reason.CURRENCY_MISMATCH
    assert (await balances(ledger, alice)).posted == 10000
    assert (await balances(ledger, dollars)).posted == 0


# -- card authorisations (holds) ------------------------------------------------------------


async def test_a_card_authorisation_captured_for_less_releases_the_rest(ledger: Ledger) -> None:
    """A hotel authorises EUR 80, captures EUR 55; Alice pays 55 and has the other 25 back."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    hotel = await open_customer(ledger, "hotel")
    hold = authorise(alice, hotel, 8000)
    await ledger.create_transfer(hold)
    held = await balances(ledger, alice)
    assert (held.posted, held.available, held.debits_pending) == (10000, 2000, 8000)
    assert await refusal(ledger, pay(alice, hotel, 2001)) == Reason.INSUFFICIENT_FUNDS

    captured, _ = await ledger.create_transfer(capture(hold, 5500))
    assert captured.amount == 5500 and captured.pending_id == hold.id
    after = await balances(ledger, alice)
    assert (after.posted, after.available, after.debits_pending) == (4500, 4500, 0)
    assert (await balances(ledger, hotel)).posted == 5500
    assert (await ledger.get_transfer(hold.id)).pending_state is PendingState.POSTED
    assert await refusal(ledger, capture(hold, 100)) == Reason.PENDING_TRANSFER_ALREADY_POSTED


async def test_capturing_more_than_was_authorised_is_refused(ledger: Ledger) -> None:
    """EXCEEDS_PENDING_AMOUNT; the authorisation is still there to capture correctly."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 3000)
    await ledger.create_transfer(hold)
    assert await refusal(ledger, capture(hold, 3001)) == Reason.EXCEEDS_PENDING_AMOUNT
    await ledger.create_transfer(capture(hold))
    assert (await balances(ledger, alice)).posted == 7000


async def test_a_voided_authorisation_gives_all_the_money_back(ledger: Ledger) -> None:
    """A cancelled order releases the hold: nothing moves and the full balance is available."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 4000)
    await ledger.create_transfer(hold)
    voided, _ = await ledger.create_transfer(release(hold))
    assert voided.amount == 4000
    after = await balances(ledger, alice)
    assert (after.posted, after.available, after.debits_pending) == (10000, 10000, 0)
    assert (await balances(ledger, shop)).credits_pending == 0
    assert (await ledger.get_transfer(hold.id)).pending_state is PendingState.VOIDED
    assert await refusal(ledger, capture(hold)) == Reason.PENDING_TRANSFER_ALREADY_VOIDED


async def test_an_authorisation_that_expires_releases_the_funds_and_a_late_capture_fails(
    ledger: Ledger, clock: SteppingClock
) -> None:
    """After its timeout the sweeper frees the held money; capturing it then is PENDING_TRANSFER_EXPIRED."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 6000, timeout_seconds=60)
    created, _ = await ledger.create_transfer(hold)
    assert created.expires_at == created.created_at + timedelta(seconds=60)

    clock.advance(30)
    await ledger.expire_due_holds()
    assert (await balances(ledger, alice)).available == 4000  # not yet

    clock.advance(31)
    assert await ledger.expire_due_holds() >= 1
    after = await balances(ledger, alice)
    assert (after.posted, after.available, after.debits_pending) == (10000, 10000, 0)
    assert (await ledger.get_transfer(hold.id)).pending_state is PendingState.EXPIRED
    assert await refusal(ledger, capture(hold)) == Reason.PENDING_TRANSFER_EXPIRED
    assert (await balances(ledger, shop)).posted == 0


async def test_an_expired_authorisation_is_released_by_the_next_payment_without_the_sweeper(
    ledger: Ledger, clock: SteppingClock
) -> None:
    """A payment that needs the lapsed hold's money succeeds: the hold expires first."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 6000, timeout_seconds=60)
    await ledger.create_transfer(hold)
    assert await refusal(ledger, pay(alice, shop, 10000)) == Reason.INSUFFICIENT_FUNDS
    clock.advance(61)
    await ledger.create_transfer(pay(alice, shop, 10000))
    assert (await balances(ledger, alice)).posted == 0
    assert (await ledger.get_transfer(hold.id)).pending_state is PendingState.EXPIRED


async def test_an_authorisation_timeout_beyond_what_the_ledger_stores_is_refused(
    ledger: Ledger,
) -> None:
    """A timeout over 2^31 - 1 seconds is INVALID_ARGUMENT, and the rest of the batch still runs."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    results = await ledger.create_transfers(
        [authorise(alice, shop, 100, timeout_seconds=2**32 - 1), pay(alice, shop, 100)]
    )
    assert [r.reason for r in results] == [Reason.INVALID_ARGUMENT, None]
    assert (await balances(ledger, shop)).posted == 100


# -- account life -------------------------------------------------------------------------


async def test_a_frozen_account_refuses_payments_until_it_is_unfrozen(ledger: Ledger) -> None:
    """Frozen: no money in or out (ACCOUNT_FROZEN). Unfrozen: business as usual."""
    bank, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    frozen = await ledger.freeze(alice.id)
    assert frozen.status is AccountStatus.FROZEN
    assert await refusal(ledger, pay(alice, bob, 100)) == Reason.ACCOUNT_FROZEN
    assert await refusal(ledger, pay(bank, alice, 100)) == Reason.ACCOUNT_FROZEN
    assert (await balances(ledger, alice)).posted == 10000
    await ledger.unfreeze(alice.id)
    await ledger.create_transfer(pay(alice, bob, 100))
    assert (await balances(ledger, bob)).posted == 100
    assert (await ledger.get_account(alice.id)).status is AccountStatus.ACTIVE


async def test_a_hold_on_a_frozen_account_can_be_released_but_not_captured(
    ledger: Ledger,
) -> None:
    """Freezing stops money moving; releasing a hold moves none, so it is allowed."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    first, second = authorise(alice, shop, 1000), authorise(alice, shop, 2000)
    await ledger.create_transfers([first, second])
    await ledger.freeze(alice.id)
    assert await refusal(ledger, capture(first)) == Reason.ACCOUNT_FROZEN
    await ledger.create_transfer(release(second))
    assert (await balances(ledger, alice)).debits_pending == 1000


async def test_an_account_closes_only_once_it_is_empty_and_then_for_good(ledger: Ledger) -> None:
    """Closing with money in it is ACCOUNT_BALANCE_NOT_ZERO; once closed it takes no transfers."""
    bank, alice = await funded_customer(ledger, "alice", 10000)
    with pytest.raises(AccountStateError) as refused:
        await ledger.close(alice.id)
    assert refused.value.reason is Reason.ACCOUNT_BALANCE_NOT_ZERO
    assert (await ledger.get_account(alice.id)).status is AccountStatus.ACTIVE

    await ledger.create_transfer(pay(alice, bank, 10000))  # she withdraws everything
    closed = await ledger.close(alice.id)
    assert closed.status is AccountStatus.CLOSED
    assert await refusal(ledger, pay(bank, alice, 1)) == Reason.ACCOUNT_CLOSED
    with pytest.raises(AccountStateError) as reopened:
        await ledger.unfreeze(alice.id)
    assert reopened.value.reason is Reason.ACCOUNT_CLOSED


async def test_a_shop_with_an_authorisation_in_flight_cannot_close(ledger: Ledger) -> None:
    """A pending hold is money still in play: the shop closes only once it is released."""
    _, alice = await funded_customer(ledger, "alice", 500)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 500)
    await ledger.create_transfer(hold)
    with pytest.raises(AccountStateError) as refused:
        await ledger.close(shop.id)
    assert refused.value.reason is Reason.ACCOUNT_BALANCE_NOT_ZERO
    await ledger.create_transfer(release(hold))
    assert (await ledger.close(shop.id)).status is AccountStatus.CLOSED


# -- statements and history ---------------------------------------------------------------


async def test_a_statement_lists_entries_newest_first_one_page_at_a_time(ledger: Ledger) -> None:
    """Pages of two, newest first, each entry with the balance after it; the last page has no token."""
    bank, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    for amount in (100, 200, 300, 400):
        await ledger.create_transfer(pay(alice, bob, amount))

    pages, token = [], ""
    while True:
        page = await ledger.list_entries(alice.id, 2, token)
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    entries = [e for p in pages for e in p]
    assert [(e.direction, e.posted_delta) for e in entries] == [
        (Direction.DEBIT, 400),
        (Direction.DEBIT, 300),
        (Direction.DEBIT, 200),
        (Direction.DEBIT, 100),
        (Direction.CREDIT, 10000),
    ]
    assert [e.balances_after.posted for e in entries] == [9000, 9400, 9700, 9900, 10000]
    assert [e.created_at for e in entries] == sorted((e.created_at for e in entries), reverse=True)
    assert {e.balances_after.currency for e in entries} == {"EUR"}
    # The bank's statement shows the deposit from its side, as a positive debit-normal balance.
    (bank_entry,) = (await ledger.list_entries(bank.id, 10, "")).items
    assert (bank_entry.direction, bank_entry.balances_after.posted) == (Direction.DEBIT, 10000)


async def test_a_statement_shows_a_hold_and_its_capture(ledger: Ledger) -> None:
    """A hold moves pending money only; its capture moves posted money and clears the pending."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    shop = await open_customer(ledger, "shop")
    hold = authorise(alice, shop, 3000)
    await ledger.create_transfer(hold)
    await ledger.create_transfer(capture(hold, 1000))
    captured, held = (await ledger.list_entries(alice.id, 2, "")).items
    assert (held.kind, held.posted_delta, held.pending_delta) == (TransferKind.PENDING, 0, 3000)
    assert held.balances_after.available == 7000
    assert (captured.kind, captured.posted_delta, captured.pending_delta) == (
        TransferKind.POST_PENDING,
        1000,
        -3000,
    )
    assert (captured.balances_after.posted, captured.balances_after.available) == (9000, 9000)


async def test_the_balance_at_a_past_moment_is_the_balance_as_it_was_then(
    ledger: Ledger, clock: SteppingClock
) -> None:
    """balance_at answers from history: before the deposit 0, after it 100.00, now 75.00."""
    before_anything = clock.now()
    clock.advance(60)
    _, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    clock.advance(60)
    after_deposit = clock.now()
    clock.advance(60)
    await ledger.create_transfer(pay(alice, bob, 2500))

    assert (await ledger.balance_at(alice.id, before_anything)).posted == 0
    then = await ledger.balance_at(alice.id, after_deposit)
    assert (then.posted, then.credits_posted, then.debits_posted) == (10000, 10000, 0)
    assert (await ledger.balance_at(alice.id, None)).posted == 7500
    assert (await ledger.balance_at(alice.id, clock.now() + timedelta(days=1))).posted == 7500


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def test_a_page_token_the_ledger_did_not_issue_is_refused(ledger: Ledger) -> None:
    """Garbage, another list's token or a forged position is INVALID_PAGE_TOKEN, never a crash."""
    _, alice = await funded_customer(ledger, "alice", 10000)
    bob = await open_customer(ledger, "bob")
    for amount in (1, 2, 3):
        await ledger.create_transfer(pay(alice, bob, amount))
    bobs_token = (await ledger.list_entries(bob.id, 1, "")).next_page_token
    scope = f"entries:{alice.id}"
    bad_tokens = [
        "not a token!",
        "AAAA",
        bobs_token,
        _token({"s": scope}),
        _token({"s": scope, "p": "2030-01-01"}),
        _token({"s": scope, "p": ["yesterday", 1]}),
        _token({"s": scope, "p": ["2030-01-01T00:00:00+00:00", "1"]}),
        _token({"s": scope, "p": ["2030-01-01T00:00:00+00:00", True]}),
        _token({"s": scope, "p": ["2030-01-01T00:00:00+00:00", 1, 2]}),
        _token([scope]),
    ]
    for token in bad_tokens:
        with pytest.raises(InvalidRequest) as refused:
            await ledger.list_entries(alice.id, 1, token)
        assert refused.value.reason is Reason.INVALID_PAGE_TOKEN, token
    with pytest.raises(InvalidRequest) as refused:
        await ledger.list_accounts(
            "alice", 1, _token({"s": "accounts:alice", "p": ["2030-01-01T00:00:00+00:00", 7]})
        )
    assert refused.value.reason is Reason.INVALID_PAGE_TOKEN
    # A token the ledger issued still works after all that.
    token = (await ledger.list_entries(alice.id, 1, "")).next_page_token
    assert len((await ledger.list_entries(alice.id, 1, token)).items) == 1


async def test_a_transfer_that_was_never_made_is_not_found(ledger: Ledger) -> None:
    """Looking up an unknown id is PENDING_TRANSFER_NOT_FOUND, not an empty transfer."""
    with pytest.raises(TransferNotFound):
        await ledger.get_transfer(uuid.uuid4())
