"""The ledger's money rules, checked on the pure engine without a database.

Each test builds a `LedgerView` (the accounts, transfers and failed ids a
batch may read), applies requests with `LedgerBatch` and looks at the
results, the accounts' counters and the writes the batch would persist.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.account.domain.engine import (
    MAX_BATCH_SIZE,
    LedgerBatch,
    LedgerView,
    Outcome,
    TransferResult,
    account_ids_of,
    request_hash,
)
from services.account.domain.errors import (
    TRANSIENT_REASONS,
    AccountStateError,
    InvalidRequest,
    Reason,
)
from services.account.domain.model import (
    Account,
    AccountStatus,
    AccountType,
    Direction,
    Limits,
    NewTransfer,
    PendingState,
    TransferKind,
    open_account,
)
from services.common.money import INT64_MAX

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
NO_LIMITS = Limits()
NO_OVERDRAFT = Limits(debits_must_not_exceed_credits=True)


# -- building blocks ----------------------------------------------------------------


def account(
    limits: Limits = NO_LIMITS,
    *,
    currency: str = "EUR",
    credits_posted: int = 0,
    debits_posted: int = 0,
    debits_pending: int = 0,
    credits_pending: int = 0,
    status: AccountStatus = AccountStatus.ACTIVE,
    last_entry_at: datetime | None = None,
) -> Account:
    no_overdraft = limits.debits_must_not_exceed_credits
    return Account(
        id=uuid.uuid4(),
        currency=currency,
        type=AccountType.CUSTOMER if no_overdraft else AccountType.INTERNAL,
        customer_id="c",
        limits=limits,
        status=status,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
        last_entry_at=last_entry_at,
    )


def single(
    debit: Account | uuid.UUID,
    credit: Account | uuid.UUID,
    amount: int | None,
    *,
    transfer_id: uuid.UUID | None = None,
    currency: str | None = "EUR",
    linked: bool = False,
    code: int = 0,
    kind: TransferKind = TransferKind.SINGLE_PHASE,
    timeout_seconds: int = 0,
) -> NewTransfer:
    return NewTransfer(
        id=transfer_id or uuid.uuid4(),
        kind=kind,
        debit_account_id=debit.id if isinstance(debit, Account) else debit,
        credit_account_id=credit.id if isinstance(credit, Account) else credit,
        amount=amount,
        currency=currency,
        timeout_seconds=timeout_seconds,
        code=code,
        linked=linked,
    )


def hold(
    debit: Account,
    credit: Account,
    amount: int,
    *,
    timeout_seconds: int = 0,
    transfer_id: uuid.UUID | None = None,
    linked: bool = False,
) -> NewTransfer:
    return single(
        debit,
        credit,
        amount,
        kind=TransferKind.PENDING,
        timeout_seconds=timeout_seconds,
        transfer_id=transfer_id,
        linked=linked,
    )


def post(
    pending_id: uuid.UUID,
    amount: int | None = None,
    *,
    linked: bool = False,
    transfer_id: uuid.UUID | None = None,
) -> NewTransfer:
    return NewTransfer(
        id=transfer_id or uuid.uuid4(),
        kind=TransferKind.POST_PENDING,
        debit_account_id=None,
        credit_account_id=None,
        amount=amount,
        currency=None,
        pending_id=pending_id,
        linked=linked,
    )


def void(pending_id: uuid.UUID, *, linked: bool = False) -> NewTransfer:
    return replace(post(pending_id, linked=linked), kind=TransferKind.VOID_PENDING)


def batch(*accounts: Account, now: datetime = NOW) -> LedgerBatch:
    return LedgerBatch(LedgerView({a.id: a for a in accounts}), now)


def codes(results: list[TransferResult]) -> list[str]:
    """CREATED / EXISTS, or the reason of a failure: what a client branches on."""
    return [r.reason.value if r.reason else r.outcome.value for r in results]


def counters(a: Account) -> tuple[int, int, int, int]:
    return (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)


def one(b: LedgerBatch, request: NewTransfer) -> str:
    (code,) = codes(b.apply([request]))
    return code


# -- request shape ------------------------------------------------------------------

SOME = uuid.uuid4()
OTHER = uuid.uuid4()


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        pytest.param(
            single(SOME, OTHER, 1, transfer_id=uuid.UUID(int=0)),
            Reason.INVALID_ID,
            id="nil transfer id",
        ),
        pytest.param(single(SOME, OTHER, 0), Reason.INVALID_AMOUNT, id="zero amount"),
        pytest.param(single(SOME, OTHER, -5), Reason.INVALID_AMOUNT, id="negative amount"),
        pytest.param(
            single(SOME, OTHER, INT64_MAX + 1), Reason.INVALID_AMOUNT, id="amount beyond int64"
        ),
        pytest.param(single(SOME, OTHER, None), Reason.INVALID_AMOUNT, id="no amount"),
        pytest.param(
            single(SOME, OTHER, 1, currency="XYZ"), Reason.INVALID_CURRENCY, id="unknown currency"
        ),
        pytest.param(
            single(SOME, OTHER, 1, currency="eur"), Reason.INVALID_CURRENCY, id="lower-case code"
        ),
        pytest.param(single(SOME, OTHER, 1, currency=None), Reason.INVALID_CURRENCY, id="none"),
        pytest.param(
            single(SOME, OTHER, 1, timeout_seconds=5),
            Reason.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
            id="timeout on a single-phase transfer",
        ),
        pytest.param(
            single(SOME, OTHER, 1, kind=TransferKind.PENDING, timeout_seconds=-1),
            Reason.INVALID_ARGUMENT,
            id="negative timeout",
        ),
        pytest.param(
            single(SOME, OTHER, 1, kind=TransferKind.PENDING, timeout_seconds=2**31),
            Reason.INVALID_ARGUMENT,
            id="timeout beyond what the ledger stores",
        ),
        pytest.param(
            single(SOME, SOME, 1), Reason.ACCOUNTS_MUST_BE_DIFFERENT, id="same account twice"
        ),
        pytest.param(
            replace(post(SOME), kind=TransferKind.EXPIRE_PENDING),
            Reason.INVALID_ARGUMENT,
            id="client-made expiry",
        ),
        pytest.param(
            replace(post(SOME), pending_id=None), Reason.INVALID_ID, id="post without pending id"
        ),
        pytest.param(
            post(SOME, transfer_id=SOME), Reason.INVALID_ID, id="post naming itself as the hold"
        ),
        pytest.param(
            replace(single(SOME, OTHER, 1), pending_id=OTHER),
            Reason.INVALID_ARGUMENT,
            id="pending id on a single-phase transfer",
        ),
        pytest.param(
            replace(single(SOME, OTHER, 1), debit_account_id=None),
            Reason.INVALID_ID,
            id="no debit account",
        ),
    ],
)
def test_a_malformed_request_fails_for_its_shape_without_burning_its_id(
    request_: NewTransfer, reason: Reason
) -> None:
    """A request that is wrong in itself fails with the field's reason and its id stays usable."""
    debit, credit = account(), account()
    b = batch(debit, credit)
    assert one(b, request_) == reason
    assert reason not in TRANSIENT_REASONS
    assert b.changes.failed == [] and b.view.failed == {}
    assert b.changes.created == [] and counters(debit) == counters(credit) == (0, 0, 0, 0)


def test_a_corrected_retry_of_a_malformed_request_succeeds() -> None:
    """Shape errors burn no id: the same id with a valid amount is then accepted."""
    debit, credit = account(), account()
    b = batch(debit, credit)
    request = single(debit, credit, 0)
    assert one(b, request) == Reason.INVALID_AMOUNT
    assert one(b, replace(request, amount=10)) == "CREATED"


def test_a_batch_larger_than_the_limit_is_refused_before_anything_moves() -> None:
    """More than MAX_BATCH_SIZE transfers in one batch is an error, not a partial apply."""
    debit, credit = account(), account()
    b = batch(debit, credit)
    with pytest.raises(ValueError, match=str(MAX_BATCH_SIZE)):
        b.apply([single(debit, credit, 1)] * (MAX_BATCH_SIZE + 1))
    assert counters(debit) == (0, 0, 0, 0)


# -- single-phase transfers -----------------------------------------------------------


def test_a_transfer_moves_the_amount_from_debit_to_credit_account() -> None:
    """A single-phase transfer raises the debit's debits and the credit's credits by the amount."""
    bank, alice = account(), account(NO_OVERDRAFT)
    b = batch(bank, alice)
    (result,) = b.apply([single(bank, alice, 1050)])
    assert result.outcome is Outcome.CREATED and result.transfer is not None
    assert result.transfer.amount == 1050 and result.transfer.created_at == NOW
    assert counters(bank) == (1050, 0, 0, 0)
    assert counters(alice) == (0, 1050, 0, 0)
    assert alice.balances.posted == 1050 and alice.balances.available == 1050


def test_every_transfer_writes_one_debit_and_one_credit_entry_with_balances_after() -> None:
    """Each transfer has two entries whose balances_after are the account's counters just after."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    b.apply([single(bank, alice, 100), single(alice, bob, 30)])
    entries = b.changes.entries
    assert [(e.account_id, e.direction) for e in entries] == [
        (bank.id, Direction.DEBIT),
        (alice.id, Direction.CREDIT),
        (alice.id, Direction.DEBIT),
        (bob.id, Direction.CREDIT),
    ]
    assert [e.posted_delta for e in entries] == [100, 100, 30, 30]
    assert [e.pending_delta for e in entries] == [0, 0, 0, 0]
    alice_after = [
        (e.balances_after.debits_posted, e.balances_after.credits_posted)
        for e in entries
        if e.account_id == alice.id
    ]
    assert alice_after == [(0, 100), (30, 100)]
    assert entries[-1].balances_after.posted == 30  # bob's balance after being paid


def test_a_transfer_from_an_unknown_account_fails_and_burns_its_id() -> None:
    """DEBIT_ACCOUNT_NOT_FOUND is recorded, so the same id fails again once the account exists."""
    alice = account()
    b = batch(alice)
    request = single(uuid.uuid4(), alice, 10)
    assert one(b, request) == Reason.DEBIT_ACCOUNT_NOT_FOUND
    assert [f.id for f in b.changes.failed] == [request.id]
    assert one(b, request) == Reason.ID_ALREADY_FAILED


def test_a_transfer_to_an_unknown_account_fails_with_credit_account_not_found() -> None:
    """The credit side is checked too and reported as such."""
    alice = account()
    assert one(batch(alice), single(alice, uuid.uuid4(), 10)) == Reason.CREDIT_ACCOUNT_NOT_FOUND


def test_a_transfer_in_another_currency_than_the_accounts_is_refused() -> None:
    """A USD transfer between EUR accounts, or EUR to a USD account, is CURRENCY_MISMATCH."""
    eur, usd, eur2 = account(), account(currency="USD"), account()
    b = batch(eur, usd, eur2)
    assert one(b, single(eur, usd, 10)) == Reason.CURRENCY_MISMATCH
    assert one(b, single(eur, eur2, 10, currency="USD")) == Reason.CURRENCY_MISMATCH
    assert counters(eur) == counters(usd) == counters(eur2) == (0, 0, 0, 0)


@pytest.mark.parametrize("frozen_side", ["debit", "credit"])
def test_a_frozen_account_neither_sends_nor_receives(frozen_side: str) -> None:
    """Either side being frozen refuses the transfer with ACCOUNT_FROZEN."""
    debit, credit = account(), account()
    (debit if frozen_side == "debit" else credit).status = AccountStatus.FROZEN
    assert one(batch(debit, credit), single(debit, credit, 10)) == Reason.ACCOUNT_FROZEN


def test_a_closed_account_is_reported_as_closed_even_when_the_other_is_frozen() -> None:
    """ACCOUNT_CLOSED wins over ACCOUNT_FROZEN: closing is the lasting state."""
    debit = account(status=AccountStatus.FROZEN)
    credit = account(status=AccountStatus.CLOSED)
    assert one(batch(debit, credit), single(debit, credit, 10)) == Reason.ACCOUNT_CLOSED


# -- limits -------------------------------------------------------------------------


def test_a_customer_can_spend_exactly_their_balance_and_not_one_unit_more() -> None:
    """With no overdraft, the last unit is spendable and the next one is INSUFFICIENT_FUNDS."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=500), account()
    b = batch(alice, shop)
    assert codes(b.apply([single(alice, shop, 500), single(alice, shop, 1)])) == [
        "CREATED",
        Reason.INSUFFICIENT_FUNDS,
    ]
    assert alice.balances.posted == 0


def test_an_agreed_overdraft_lets_the_balance_go_that_far_below_zero() -> None:
    """An overdraft of 300 allows a balance of -300 and refuses -301."""
    alice = account(Limits(debits_must_not_exceed_credits=True, overdraft_limit=300))
    alice.credits_posted = 100
    shop = account()
    b = batch(alice, shop)
    assert codes(b.apply([single(alice, shop, 400), single(alice, shop, 1)])) == [
        "CREATED",
        Reason.INSUFFICIENT_FUNDS,
    ]
    assert alice.balances.posted == -300


def test_an_account_without_limits_can_go_negative() -> None:
    """A settlement account (no flags) may be debited without any credits."""
    bank, alice = account(), account(NO_OVERDRAFT)
    assert one(batch(bank, alice), single(bank, alice, 10**12)) == "CREATED"
    assert bank.debits_posted == 10**12


def test_credits_must_not_exceed_debits_caps_what_an_account_can_receive() -> None:
    """Such an account takes credits up to its debits (pending included), then EXCEEDS_DEBITS."""
    pool = account(Limits(credits_must_not_exceed_debits=True), debits_posted=100)
    payer = account()
    b = batch(pool, payer)
    assert codes(
        b.apply(
            [
                hold(payer, pool, 30),
                single(payer, pool, 70),
                single(payer, pool, 1),
            ]
        )
    ) == ["CREATED", "CREATED", Reason.EXCEEDS_DEBITS]
    assert counters(pool) == (100, 70, 0, 30)


def test_incoming_holds_are_not_spendable() -> None:
    """Money held on its way in (credits_pending) does not count as available funds."""
    bank, alice, shop = account(), account(NO_OVERDRAFT), account()
    b = batch(bank, alice, shop)
    assert codes(b.apply([hold(bank, alice, 100), single(alice, shop, 1)])) == [
        "CREATED",
        Reason.INSUFFICIENT_FUNDS,
    ]
    assert alice.balances.available == 0


def test_a_transfer_that_would_overflow_a_counter_fails_with_balance_overflow() -> None:
    """Counters are bigints: a credit past INT64_MAX is refused and changes nothing."""
    bank = account()
    rich = account(credits_posted=INT64_MAX - 5)
    b = batch(bank, rich)
    assert one(b, single(bank, rich, 6)) == Reason.BALANCE_OVERFLOW
    assert one(b, single(bank, rich, 5)) == "CREATED"
    assert rich.credits_posted == INT64_MAX


def test_refused_transfers_burn_their_id_even_after_the_reason_goes_away() -> None:
    """A retry of an INSUFFICIENT_FUNDS transfer after a deposit is ID_ALREADY_FAILED, not CREATED."""
    bank, alice, shop = account(), account(NO_OVERDRAFT), account()
    b = batch(bank, alice, shop)
    payment = single(alice, shop, 50)
    assert codes(b.apply([payment, single(bank, alice, 100), payment])) == [
        Reason.INSUFFICIENT_FUNDS,
        "CREATED",
        Reason.ID_ALREADY_FAILED,
    ]
    assert [(f.id, f.reason) for f in b.changes.failed] == [(payment.id, Reason.INSUFFICIENT_FUNDS)]
    assert shop.credits_posted == 0


def test_an_id_that_failed_in_an_earlier_batch_fails_again_with_id_already_failed() -> None:
    """A failure loaded from the database is final, whatever the retry now says."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    request = single(alice, shop, 50)
    b = LedgerBatch(
        LedgerView({a.id: a for a in (alice, shop)}, failed={request.id: Reason.ACCOUNT_FROZEN}),
        NOW,
    )
    assert one(b, request) == Reason.ID_ALREADY_FAILED
    assert one(b, replace(request, amount=1)) == Reason.ID_ALREADY_FAILED
    assert b.changes.failed == [] and shop.credits_posted == 0


def test_only_reasons_that_could_change_later_burn_an_id() -> None:
    """Request-shape and idempotency failures are deterministic and are not recorded as failed."""
    shape_and_idempotency = {
        Reason.INVALID_ID,
        Reason.INVALID_AMOUNT,
        Reason.INVALID_CURRENCY,
        Reason.ACCOUNTS_MUST_BE_DIFFERENT,
        Reason.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        Reason.LINKED_EVENT_CHAIN_OPEN,
        Reason.LINKED_EVENT_FAILED,
        Reason.EXISTS_WITH_DIFFERENT_FIELDS,
        Reason.ID_ALREADY_FAILED,
        Reason.INVALID_ARGUMENT,
    }
    assert not shape_and_idempotency & TRANSIENT_REASONS
    assert {
        Reason.INSUFFICIENT_FUNDS,
        Reason.ACCOUNT_FROZEN,
        Reason.DEBIT_ACCOUNT_NOT_FOUND,
        Reason.PENDING_TRANSFER_EXPIRED,
    } <= TRANSIENT_REASONS


# -- idempotency --------------------------------------------------------------------


def test_an_identical_retry_is_exists_and_moves_no_money_twice() -> None:
    """Sending the same transfer again returns EXISTS with the original and books nothing."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    request = single(bank, alice, 100, code=7)
    first, again = b.apply([request, request])
    assert codes([first, again]) == ["CREATED", "EXISTS"]
    assert again.transfer == first.transfer
    assert alice.credits_posted == 100 and len(b.changes.entries) == 2


def test_a_retry_from_an_earlier_batch_is_exists() -> None:
    """A transfer loaded from the database answers EXISTS to an identical request."""
    bank, alice = account(), account()
    request = single(bank, alice, 100)
    (created,) = batch(bank, alice).apply([request])
    assert created.transfer is not None
    later = LedgerBatch(
        LedgerView({bank.id: bank, alice.id: alice}, transfers={request.id: created.transfer}),
        NOW + timedelta(seconds=1),
    )
    (again,) = later.apply([replace(request, linked=False)])
    assert again.outcome is Outcome.EXISTS and again.transfer == created.transfer
    assert later.changes.entries == []


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 101},
        {"code": 8},
        {"currency": "USD"},
        {"kind": TransferKind.PENDING},
        {"metadata": (("note", "x"),)},
    ],
    ids=["amount", "code", "currency", "kind", "metadata"],
)
def test_reusing_an_id_for_a_different_transfer_is_exists_with_different_fields(
    change: dict[str, object],
) -> None:
    """An id is forever: any field that differs from the original makes the reuse fail."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    request = single(bank, alice, 100, code=7)
    b.apply([request])
    assert one(b, replace(request, **change)) == Reason.EXISTS_WITH_DIFFERENT_FIELDS  # type: ignore[arg-type]
    assert alice.credits_posted == 100
    assert b.changes.failed == []


def test_the_linked_flag_is_not_part_of_a_transfers_identity() -> None:
    """A transfer sent in a chain and retried alone is the same transfer: EXISTS."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    request = single(bank, alice, 100, linked=True)
    assert codes(b.apply([request, single(bank, alice, 1)])) == ["CREATED", "CREATED"]
    assert one(b, replace(request, linked=False)) == "EXISTS"
    assert request_hash(request) == request_hash(replace(request, linked=False))


def test_metadata_order_does_not_change_a_transfers_identity() -> None:
    """The same metadata in another order is the same request."""
    request = replace(single(SOME, OTHER, 1), metadata=(("a", "1"), ("b", "2")))
    assert request_hash(request) == request_hash(
        replace(request, metadata=(("b", "2"), ("a", "1")))
    )


# -- linked chains ------------------------------------------------------------------


def test_a_linked_chain_that_succeeds_applies_every_transfer() -> None:
    """All members of a successful chain are CREATED and all their money moves."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    results = b.apply([single(bank, alice, 100, linked=True), single(alice, bob, 100)])
    assert codes(results) == ["CREATED", "CREATED"]
    assert (alice.balances.posted, bob.balances.posted) == (0, 100)


def test_a_linked_chain_fails_as_a_whole_when_one_member_fails() -> None:
    """The failing member says why, every other says LINKED_EVENT_FAILED, and nothing moves."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    chain = [
        single(bank, alice, 100, linked=True),
        single(alice, bob, 150, linked=True),
        single(bank, bob, 5),
    ]
    assert codes(b.apply(chain)) == [
        Reason.LINKED_EVENT_FAILED,
        Reason.INSUFFICIENT_FUNDS,
        Reason.LINKED_EVENT_FAILED,
    ]
    assert counters(bank) == counters(alice) == counters(bob) == (0, 0, 0, 0)
    assert b.changes.created == [] and b.changes.entries == []
    assert b.changes.touched_accounts == set()


def test_a_failed_chain_burns_only_the_id_of_the_member_that_failed() -> None:
    """The others were never judged on their own: they can be sent again and succeed."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    deposit = single(bank, alice, 100, linked=True)
    overspend = single(alice, bob, 150)
    b.apply([deposit, overspend])
    assert [f.id for f in b.changes.failed] == [overspend.id]
    assert codes(b.apply([replace(deposit, linked=False), overspend])) == [
        "CREATED",
        Reason.ID_ALREADY_FAILED,
    ]


def test_a_chain_left_open_at_the_end_of_the_batch_fails_without_being_tried() -> None:
    """A last transfer still marked linked is LINKED_EVENT_CHAIN_OPEN; the chain does nothing."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    first = single(bank, alice, 1)
    results = b.apply(
        [first, single(bank, alice, 10, linked=True), single(bank, alice, 20, linked=True)]
    )
    assert codes(results) == [
        "CREATED",
        Reason.LINKED_EVENT_FAILED,
        Reason.LINKED_EVENT_CHAIN_OPEN,
    ]
    assert alice.credits_posted == 1
    assert b.changes.failed == []


def test_a_failed_chain_does_not_undo_the_transfers_before_it() -> None:
    """Chains are independent: an unlinked transfer earlier in the batch stays applied."""
    bank, alice = account(), account(NO_OVERDRAFT)
    b = batch(bank, alice)
    results = b.apply(
        [
            single(bank, alice, 100),
            single(alice, bank, 60, linked=True),
            single(alice, bank, 60),
        ]
    )
    assert codes(results) == ["CREATED", Reason.LINKED_EVENT_FAILED, Reason.INSUFFICIENT_FUNDS]
    assert counters(alice) == (0, 100, 0, 0)
    assert len(b.changes.created) == 1 and len(b.changes.entries) == 2


def test_a_chain_may_repeat_a_transfer_that_already_exists() -> None:
    """An existing transfer in a chain answers EXISTS and does not stop the chain."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    earlier = single(bank, alice, 100)
    b.apply([earlier])
    results = b.apply([replace(earlier, linked=True), single(bank, alice, 5)])
    assert codes(results) == ["EXISTS", "CREATED"]
    assert alice.credits_posted == 105


def test_an_existing_transfer_in_a_failed_chain_still_exists() -> None:
    """It was there before the chain and still is, so it keeps answering EXISTS."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    earlier = single(bank, alice, 100)
    b.apply([earlier])
    results = b.apply([replace(earlier, linked=True), single(bank, uuid.uuid4(), 5)])
    assert codes(results) == ["EXISTS", Reason.CREDIT_ACCOUNT_NOT_FOUND]
    assert earlier.id in b.view.transfers and alice.credits_posted == 100


def test_a_repeated_id_inside_a_failed_chain_is_not_reported_as_existing() -> None:
    """A transfer created and repeated within a chain that fails does not exist afterwards."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    created_in_chain = single(bank, alice, 100, linked=True)
    results = b.apply([created_in_chain, created_in_chain, single(bank, uuid.uuid4(), 5)])
    assert codes(results) == [
        Reason.LINKED_EVENT_FAILED,
        Reason.LINKED_EVENT_FAILED,
        Reason.CREDIT_ACCOUNT_NOT_FOUND,
    ]
    assert created_in_chain.id not in b.view.transfers and alice.credits_posted == 0


def test_a_hold_resolved_by_a_failed_chain_is_pending_again() -> None:
    """Rolling back a chain that posted an existing hold leaves the hold to post later."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    h = hold(bank, alice, 100)
    b.apply([h])
    assert codes(b.apply([post(h.id, linked=True), single(bank, uuid.uuid4(), 1)])) == [
        Reason.LINKED_EVENT_FAILED,
        Reason.CREDIT_ACCOUNT_NOT_FOUND,
    ]
    assert b.view.transfers[h.id].pending_state is PendingState.PENDING
    assert counters(alice) == (0, 0, 0, 100)
    assert one(b, post(h.id)) == "CREATED"
    assert counters(alice) == (0, 100, 0, 0)


def test_a_hold_created_by_a_failed_chain_cannot_be_posted_later_in_the_batch() -> None:
    """A hold that a failed chain created and posted is gone: posting it is NOT_FOUND."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    h = hold(bank, alice, 100, linked=True)
    results = b.apply(
        [h, post(h.id, linked=True), single(bank, uuid.uuid4(), 1), post(h.id)],
    )
    assert codes(results) == [
        Reason.LINKED_EVENT_FAILED,
        Reason.LINKED_EVENT_FAILED,
        Reason.CREDIT_ACCOUNT_NOT_FOUND,
        Reason.PENDING_TRANSFER_NOT_FOUND,
    ]
    assert h.id not in b.view.transfers
    assert b.changes.created == [] and b.changes.resolved_pending == []
    assert counters(bank) == counters(alice) == (0, 0, 0, 0)


# -- holds (two-phase transfers) ---------------------------------------------------------


def test_a_hold_reserves_funds_without_moving_them() -> None:
    """PENDING raises the pending counters only, and the held money is no longer available."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    assert codes(b.apply([h, single(alice, shop, 21)])) == ["CREATED", Reason.INSUFFICIENT_FUNDS]
    assert counters(alice) == (0, 100, 80, 0) and counters(shop) == (0, 0, 0, 80)
    assert alice.balances.posted == 100 and alice.balances.available == 20
    assert b.view.transfers[h.id].pending_state is PendingState.PENDING


def test_posting_a_hold_in_full_moves_the_held_amount() -> None:
    """A post without amount settles everything the hold reserved."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    _, posted = b.apply([h, post(h.id)])
    assert posted.outcome is Outcome.CREATED and posted.transfer is not None
    assert posted.transfer.amount == 80 and posted.transfer.pending_id == h.id
    assert counters(alice) == (80, 100, 0, 0) and counters(shop) == (0, 80, 0, 0)
    assert b.view.transfers[h.id].pending_state is PendingState.POSTED


def test_posting_part_of_a_hold_releases_the_rest() -> None:
    """A card authorised for 80 and captured for 55 moves 55 and frees the other 25."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    _, posted = b.apply([h, post(h.id, 55)])
    assert posted.transfer is not None and posted.transfer.amount == 55
    assert counters(alice) == (55, 100, 0, 0) and alice.balances.available == 45
    entry = b.changes.entries[-2]
    assert (entry.direction, entry.posted_delta, entry.pending_delta) == (Direction.DEBIT, 55, -80)


def test_posting_more_than_the_hold_is_refused() -> None:
    """EXCEEDS_PENDING_AMOUNT, and the hold is still there to post correctly."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    assert codes(b.apply([h, post(h.id, 81), post(h.id, 80)])) == [
        "CREATED",
        Reason.EXCEEDS_PENDING_AMOUNT,
        "CREATED",
    ]
    assert alice.debits_posted == 80


def test_voiding_a_hold_releases_everything_and_moves_nothing() -> None:
    """VOID_PENDING returns the held amount to available and posts nothing."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    _, voided = b.apply([h, void(h.id)])
    assert voided.transfer is not None and voided.transfer.amount == 80
    assert counters(alice) == (0, 100, 0, 0) and counters(shop) == (0, 0, 0, 0)
    assert b.view.transfers[h.id].pending_state is PendingState.VOIDED


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        ("post", "post", Reason.PENDING_TRANSFER_ALREADY_POSTED),
        ("post", "void", Reason.PENDING_TRANSFER_ALREADY_POSTED),
        ("void", "void", Reason.PENDING_TRANSFER_ALREADY_VOIDED),
        ("void", "post", Reason.PENDING_TRANSFER_ALREADY_VOIDED),
    ],
)
def test_a_hold_is_resolved_only_once(first: str, second: str, reason: Reason) -> None:
    """A second post or void of the same hold fails with what already happened to it."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    h = hold(alice, shop, 80)
    resolve = {"post": post, "void": void}
    assert codes(b.apply([h, resolve[first](h.id), resolve[second](h.id)])) == [
        "CREATED",
        "CREATED",
        reason,
    ]
    assert alice.debits_posted == (80 if first == "post" else 0)
    assert alice.debits_pending == 0


def test_resolving_something_that_is_not_a_hold_is_refused() -> None:
    """Posting a single-phase transfer is NOT_PENDING; posting an unknown id is NOT_FOUND."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    payment = single(bank, alice, 10)
    b.apply([payment])
    assert one(b, post(payment.id)) == Reason.PENDING_TRANSFER_NOT_PENDING
    assert one(b, void(uuid.uuid4())) == Reason.PENDING_TRANSFER_NOT_FOUND


def test_a_post_naming_other_accounts_or_currency_than_the_hold_is_refused() -> None:
    """A resolution may repeat the hold's accounts and currency but not contradict them."""
    alice, shop, other = account(credits_posted=100), account(), account()
    b = batch(alice, shop, other)
    h = hold(alice, shop, 80)
    b.apply([h])
    assert (
        one(b, replace(post(h.id), credit_account_id=other.id))
        == Reason.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
    )
    assert (
        one(b, replace(post(h.id), currency="USD"))
        == Reason.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY
    )
    matching = replace(post(h.id), debit_account_id=alice.id, credit_account_id=shop.id)
    assert one(b, replace(matching, currency="EUR")) == "CREATED"


def test_a_hold_on_a_frozen_account_can_be_voided_but_not_posted() -> None:
    """Voiding moves no money, so freezing does not block it; posting is ACCOUNT_FROZEN."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    b = batch(alice, shop)
    first, second = hold(alice, shop, 10), hold(alice, shop, 20)
    b.apply([first, second])
    alice.status = AccountStatus.FROZEN
    assert codes(b.apply([post(first.id), void(second.id)])) == [
        Reason.ACCOUNT_FROZEN,
        "CREATED",
    ]
    assert counters(alice) == (0, 100, 10, 0)


def test_a_hold_past_its_timeout_expires_when_a_batch_touches_its_accounts() -> None:
    """An overdue hold is released at the start of the next batch, before any limit check."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    h = hold(alice, shop, 80, timeout_seconds=60)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None
    assert created.transfer.expires_at == NOW + timedelta(seconds=60)
    later = LedgerBatch(
        LedgerView({alice.id: alice, shop.id: shop}, transfers={h.id: created.transfer}),
        NOW + timedelta(seconds=60),
    )
    # 100 is only available because the hold of 80 lapsed first.
    assert codes(later.apply([single(alice, shop, 100)])) == ["CREATED"]
    expiry = later.changes.created[0]
    assert expiry.kind is TransferKind.EXPIRE_PENDING and expiry.pending_id == h.id
    assert expiry.amount == 80
    assert later.changes.resolved_pending == [h.id]
    assert later.view.transfers[h.id].pending_state is PendingState.EXPIRED
    assert counters(alice) == (100, 100, 0, 0)


def test_posting_an_expired_hold_fails_and_the_money_stays_released() -> None:
    """A late capture gets PENDING_TRANSFER_EXPIRED; the hold's funds are back."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    h = hold(alice, shop, 80, timeout_seconds=60)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None
    later = LedgerBatch(
        LedgerView({alice.id: alice, shop.id: shop}, transfers={h.id: created.transfer}),
        NOW + timedelta(seconds=61),
    )
    late = post(h.id)
    assert one(later, late) == Reason.PENDING_TRANSFER_EXPIRED
    assert [f.id for f in later.changes.failed] == [late.id]
    assert counters(alice) == (0, 100, 0, 0) and counters(shop) == (0, 0, 0, 0)


def test_a_hold_just_before_its_timeout_can_still_be_posted() -> None:
    """One second before expiry the hold is pending and posts normally."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    h = hold(alice, shop, 80, timeout_seconds=60)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None
    later = LedgerBatch(
        LedgerView({alice.id: alice, shop.id: shop}, transfers={h.id: created.transfer}),
        NOW + timedelta(seconds=59),
    )
    assert one(later, post(h.id)) == "CREATED"


def test_a_hold_without_timeout_never_expires() -> None:
    """timeout_seconds = 0 means the hold waits for a post or void, however long."""
    alice, shop = account(NO_OVERDRAFT, credits_posted=100), account()
    h = hold(alice, shop, 80)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None and created.transfer.expires_at is None
    years_later = LedgerBatch(
        LedgerView({alice.id: alice, shop.id: shop}, transfers={h.id: created.transfer}),
        NOW + timedelta(days=3650),
    )
    assert years_later.expire_due() == []
    assert one(years_later, post(h.id)) == "CREATED"


def test_expiry_gets_an_id_derived_from_the_hold() -> None:
    """Two batches expiring the same hold write the same id, so the database keeps only one."""
    alice, shop = account(), account()
    h = hold(alice, shop, 80, timeout_seconds=1)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None
    expiry_ids = []
    for seconds in (5, 9):
        view = LedgerView(
            {a.id: replace(a) for a in (alice, shop)}, transfers={h.id: created.transfer}
        )
        b = LedgerBatch(view, NOW + timedelta(seconds=seconds))
        (expired,) = b.expire_due()
        assert expired.pending_state is PendingState.EXPIRED
        expiry_ids.append(b.changes.created[0].id)
    assert expiry_ids[0] == expiry_ids[1] != h.id


def test_an_overdue_hold_whose_accounts_are_not_loaded_is_left_alone() -> None:
    """The engine only touches locked accounts; the sweeper expires such a hold later."""
    alice, shop = account(), account()
    h = hold(alice, shop, 80, timeout_seconds=1)
    (created,) = batch(alice, shop).apply([h])
    assert created.transfer is not None
    b = LedgerBatch(
        LedgerView({alice.id: alice}, transfers={h.id: created.transfer}),
        NOW + timedelta(seconds=5),
    )
    assert b.expire_due() == []
    assert b.changes.created == []


# -- time ---------------------------------------------------------------------------


def test_transfers_in_one_batch_get_strictly_increasing_timestamps() -> None:
    """Even at one clock reading, each transfer of an account is later than the one before."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    b.apply([single(bank, alice, 1) for _ in range(5)])
    stamps = [t.created_at for t in b.changes.created]
    assert stamps == [NOW + i * TICK for i in range(5)]
    assert alice.last_entry_at == stamps[-1]


def test_a_clock_behind_the_last_entry_still_stamps_later_entries() -> None:
    """If the clock reads earlier than an account's last entry, new entries follow that entry."""
    last = NOW + timedelta(seconds=30)
    bank, alice = account(last_entry_at=last), account()
    b = batch(bank, alice, now=NOW)
    (result,) = b.apply([single(bank, alice, 1)])
    assert result.transfer is not None and result.transfer.created_at == last + TICK


def test_a_clock_ahead_of_the_last_entry_is_used_as_it_is() -> None:
    """Normally a transfer's time is simply the time the batch ran."""
    bank, alice = account(last_entry_at=NOW - timedelta(hours=1)), account()
    (result,) = batch(bank, alice).apply([single(bank, alice, 1)])
    assert result.transfer is not None and result.transfer.created_at == NOW


def test_a_failed_chain_does_not_move_an_accounts_last_entry_time() -> None:
    """Rolled-back transfers leave no trace in the account's timeline."""
    bank, alice = account(), account()
    b = batch(bank, alice)
    b.apply([single(bank, alice, 1, linked=True), single(bank, uuid.uuid4(), 1)])
    assert alice.last_entry_at is None and bank.updated_at is None


# -- accounts -------------------------------------------------------------------------


def test_an_account_with_a_balance_or_a_hold_cannot_be_closed() -> None:
    """close() refuses with ACCOUNT_BALANCE_NOT_ZERO until posted and pending are both zero."""
    with_balance = account(credits_posted=1)
    with_hold = account(debits_pending=1)
    for a in (with_balance, with_hold):
        with pytest.raises(AccountStateError) as refused:
            a.close()
        assert refused.value.reason is Reason.ACCOUNT_BALANCE_NOT_ZERO
        assert a.status is AccountStatus.ACTIVE
    settled = account(credits_posted=5, debits_posted=5)
    settled.close()
    assert settled.status is AccountStatus.CLOSED


def test_a_closed_account_cannot_be_frozen_or_reopened() -> None:
    """Closing is final: freeze and unfreeze then fail with ACCOUNT_CLOSED."""
    a = account(status=AccountStatus.CLOSED)
    for change in (a.freeze, a.unfreeze):
        with pytest.raises(AccountStateError) as refused:
            change()
        assert refused.value.reason is Reason.ACCOUNT_CLOSED
    assert a.status is AccountStatus.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"currency": "EURO"}, Reason.INVALID_CURRENCY),
        ({"account_id": uuid.UUID(int=0)}, Reason.INVALID_ID),
        (
            {"limits": Limits(True, True)},
            Reason.CONFLICTING_LIMIT_FLAGS,
        ),
        ({"limits": Limits(overdraft_limit=10)}, Reason.INVALID_ARGUMENT),
        ({"customer_id": ""}, Reason.INVALID_ARGUMENT),
    ],
    ids=[
        "unknown currency",
        "nil id",
        "both limit flags",
        "overdraft without limit",
        "customer without owner",
    ],
)
def test_an_account_opening_with_contradictory_fields_is_refused(
    kwargs: dict[str, object], reason: Reason
) -> None:
    """open_account says which field is wrong instead of creating a half-valid account."""
    fields: dict[str, object] = {
        "account_id": None,
        "customer_id": "alice",
        "currency": "EUR",
        "account_type": AccountType.CUSTOMER,
        "limits": None,
        "metadata": {},
        "now": NOW,
    }
    with pytest.raises(InvalidRequest) as refused:
        open_account(**{**fields, **kwargs})  # type: ignore[arg-type]
    assert refused.value.reason is reason


def test_a_customer_account_cannot_overdraw_unless_agreed() -> None:
    """Customer accounts default to debits_must_not_exceed_credits; others have no limits."""
    customer = open_account(
        account_id=None,
        customer_id="alice",
        currency="EUR",
        account_type=AccountType.CUSTOMER,
        limits=None,
        metadata={},
        now=NOW,
    )
    assert customer.limits == NO_OVERDRAFT
    assert Limits.default_for(AccountType.SETTLEMENT) == NO_LIMITS
    assert Limits.default_for(AccountType.INTERNAL) == NO_LIMITS


def test_a_settlement_account_shows_its_balance_on_the_debit_side() -> None:
    """Money the bank holds elsewhere reads as positive when debited."""
    bank = replace(account(), type=AccountType.SETTLEMENT, debits_posted=500, credits_pending=20)
    assert bank.balances.posted == 500 and bank.balances.available == 480


def test_a_batch_names_the_accounts_its_transfers_mention() -> None:
    """account_ids_of lists debit and credit accounts, skipping those a post leaves out."""
    a, b_ = uuid.uuid4(), uuid.uuid4()
    assert account_ids_of([single(a, b_, 1), post(uuid.uuid4())]) == {a, b_}


# -- group commit: several submissions in one batch -------------------------------------


def test_submissions_sharing_a_batch_keep_their_own_chains() -> None:
    """A submission ending in a linked transfer fails alone; its neighbour is untouched."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    open_chain = [single(bank, alice, 10, linked=True)]
    independent = [single(bank, bob, 20)]
    results = b.apply_many([open_chain, independent])
    assert [codes(r) for r in results] == [["LINKED_EVENT_CHAIN_OPEN"], ["CREATED"]]
    assert (alice.credits_posted, bob.credits_posted) == (0, 20)


def test_later_submissions_see_what_earlier_ones_did() -> None:
    """Funds deposited by the first submission can be spent by the second, as in sequence."""
    bank, alice, bob = account(), account(NO_OVERDRAFT), account(NO_OVERDRAFT)
    b = batch(bank, alice, bob)
    results = b.apply_many([[single(bank, alice, 50)], [single(alice, bob, 50)]])
    assert [codes(r) for r in results] == [["CREATED"], ["CREATED"]]
    assert counters(alice) == (50, 50, 0, 0)


def test_the_same_id_from_two_submissions_is_created_once() -> None:
    """Two clients racing with one transfer id in one batch: CREATED, then EXISTS."""
    bank, alice = account(), account(NO_OVERDRAFT)
    b = batch(bank, alice)
    request = single(bank, alice, 5)
    results = b.apply_many([[request], [request]])
    assert [codes(r) for r in results] == [["CREATED"], ["EXISTS"]]
    assert alice.credits_posted == 5
