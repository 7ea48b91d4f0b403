"""PostgreSQL keeps the books straight on its own, whoever writes to it.

These tests bypass the service and talk SQL to the ledger schema, as a
buggy release or a hurried operator might. Every way of unbalancing the
books must be refused by the database itself, with a "ledger invariant"
error (or a named constraint) that says what was wrong. A control test
shows that a correct hand-written double entry is accepted, so the guards
refuse what is wrong, not everything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import TupleRow

from services.account.domain.errors import Reason, TransferRefused
from services.account.domain.model import (
    Account,
    AccountType,
    Limits,
    NewTransfer,
    TransferKind,
)
from services.account.service_layer.ledger import Ledger, OpenAccount

Sql = psycopg.AsyncConnection[TupleRow]
Legs = tuple[int, int]  # (posted delta, pending delta) of one entry


@pytest.fixture
async def sql(ledger_database_url: str) -> AsyncIterator[Sql]:
    """A plain connection to the ledger database, outside the service."""
    async with await psycopg.AsyncConnection.connect(ledger_database_url) as conn:
        yield conn


async def settlement(ledger: Ledger) -> Account:
    account, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    return account


async def customer(ledger: Ledger, limits: Limits | None = None) -> Account:
    account, _ = await ledger.open_account(
        OpenAccount("EUR", AccountType.CUSTOMER, "someone", limits=limits)
    )
    return account


def single(debit: Account, credit: Account, amount: int) -> NewTransfer:
    return NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, debit.id, credit.id, amount, "EUR")


async def counters(sql: Sql, account: uuid.UUID) -> tuple[int, int, int, int]:
    cur = await sql.execute(
        "SELECT debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger.accounts WHERE id = %s",
        (account,),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def append_entry(
    sql: Sql,
    transfer_id: uuid.UUID,
    account: uuid.UUID,
    direction: str,
    legs: Legs,
    *,
    claimed_after: tuple[int, int, int, int] | None = None,
) -> tuple[int, int, int, int]:
    """Write an entry continuing the account's chain (or claiming other counters)."""
    dp, cp, dpe, cpe = await counters(sql, account)
    posted, pending = legs
    if direction == "D":
        dp, dpe = dp + posted, dpe + pending
    else:
        cp, cpe = cp + posted, cpe + pending
    after = claimed_after or (dp, cp, dpe, cpe)
    await sql.execute(
        "INSERT INTO ledger.entries (transfer_id, account_id, direction, posted_delta,"
        " pending_delta, debits_posted, credits_posted, debits_pending, credits_pending,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
        (transfer_id, account, direction, posted, pending, *after),
    )
    return after


async def set_counters(sql: Sql, account: uuid.UUID, values: tuple[int, int, int, int]) -> None:
    await sql.execute(
        "UPDATE ledger.accounts SET debits_posted = %s, credits_posted = %s,"
        " debits_pending = %s, credits_pending = %s, last_entry_at = now(), updated_at = now()"
        " WHERE id = %s",
        (*values, account),
    )


async def insert_transfer(
    sql: Sql,
    transfer_id: uuid.UUID,
    kind: str,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    *,
    currency: str = "EUR",
    pending_id: uuid.UUID | None = None,
) -> None:
    await sql.execute(
        "INSERT INTO ledger.transfers (id, kind, debit_account_id, credit_account_id, amount,"
        " currency, pending_id, request_hash, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, '\\x00', now())",
        (transfer_id, kind, debit, credit, amount, currency, pending_id),
    )


async def book_by_hand(
    sql: Sql,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    *,
    kind: str = "SINGLE_PHASE",
    debit_legs: Legs | None = None,
    credit_legs: Legs | None = None,
    currency: str = "EUR",
    pending_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Everything the service writes for a transfer, in SQL; legs default to a correct booking."""
    transfer_id = uuid.uuid4()
    correct = (amount, 0) if kind == "SINGLE_PHASE" else (0, amount)
    await insert_transfer(
        sql, transfer_id, kind, debit, credit, amount, currency=currency, pending_id=pending_id
    )
    debit_after = await append_entry(sql, transfer_id, debit, "D", debit_legs or correct)
    credit_after = await append_entry(sql, transfer_id, credit, "C", credit_legs or correct)
    await set_counters(sql, debit, debit_after)
    await set_counters(sql, credit, credit_after)
    return transfer_id


async def refused_at_commit(sql: Sql) -> psycopg.Error:
    """Commit what was written so far, expecting the database to refuse; the error it gave."""
    with pytest.raises(psycopg.Error) as refused:
        await sql.commit()
    return refused.value


# -- control ----------------------------------------------------------------------------


async def test_a_correct_double_entry_written_by_hand_is_accepted(ledger: Ledger, sql: Sql) -> None:
    """The guards are not a blanket ban: a balanced transfer in SQL commits and shows in the ledger."""
    bank, alice = await settlement(ledger), await customer(ledger)
    transfer_id = await book_by_hand(sql, bank.id, alice.id, 700)
    await sql.commit()
    assert (await ledger.get_account(alice.id)).balances.posted == 700
    assert (await ledger.get_transfer(transfer_id)).amount == 700
    # The service carries on from the hand-written entry.
    await ledger.create_transfer(single(alice, bank, 200))
    assert (await ledger.get_account(alice.id)).balances.posted == 500


# -- double entry -----------------------------------------------------------------------


async def test_a_transfer_whose_credit_differs_from_its_debit_fails_at_commit(
    ledger: Ledger, sql: Sql
) -> None:
    """Debit 100 but credit 90: each statement passes, the transfer is refused at commit."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await book_by_hand(sql, bank.id, alice.id, 100, credit_legs=(90, 0))
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert re.match(r"ledger invariant: debits and credits of transfer \S+ differ", str(refused))
    assert await counters(sql, alice.id) == (0, 0, 0, 0)


async def test_a_transfer_with_a_single_leg_fails_at_commit(ledger: Ledger, sql: Sql) -> None:
    """Money that leaves one account must arrive in another: a lone debit entry is refused."""
    bank, alice = await settlement(ledger), await customer(ledger)
    transfer_id = uuid.uuid4()
    await insert_transfer(sql, transfer_id, "SINGLE_PHASE", bank.id, alice.id, 100)
    await set_counters(sql, bank.id, await append_entry(sql, transfer_id, bank.id, "D", (100, 0)))
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert re.match(
        r"ledger invariant: transfer \S+ needs one debit and one credit entry", str(refused)
    )
    assert await counters(sql, bank.id) == (0, 0, 0, 0)


async def test_entries_that_do_not_add_up_to_the_transfer_amount_fail_at_commit(
    ledger: Ledger, sql: Sql
) -> None:
    """A transfer of 100 booked as 90 on both sides is balanced but wrong, and refused."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await book_by_hand(sql, bank.id, alice.id, 100, debit_legs=(90, 0), credit_legs=(90, 0))
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert re.match(
        r"ledger invariant: entries of transfer \S+ do not match its amount", str(refused)
    )


async def test_a_transfer_in_another_currency_than_its_accounts_fails_at_commit(
    ledger: Ledger, sql: Sql
) -> None:
    """USD booked between two EUR accounts is refused."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await book_by_hand(sql, bank.id, alice.id, 100, currency="USD")
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert "is not in its accounts' currency" in str(refused)


# -- balances -----------------------------------------------------------------------------


async def test_changing_an_accounts_balance_directly_fails_at_commit(
    ledger: Ledger, sql: Sql
) -> None:
    """Crediting an account without an entry is refused: balances come from entries only."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 1000))
    await sql.execute(
        "UPDATE ledger.accounts SET credits_posted = credits_posted + 100 WHERE id = %s",
        (alice.id,),
    )
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert str(refused).startswith(f"ledger invariant: balances of account {alice.id} differ")
    assert (await ledger.get_account(alice.id)).balances.posted == 1000


async def test_a_customer_without_overdraft_cannot_be_driven_negative_by_sql(
    ledger: Ledger, sql: Sql
) -> None:
    """Even a well-formed double entry may not take a no-overdraft account below zero."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 100))
    for kind in ("SINGLE_PHASE", "PENDING"):
        with pytest.raises(errors.CheckViolation) as refused:
            await book_by_hand(sql, alice.id, bank.id, 101, kind=kind)
        assert refused.value.diag.constraint_name == "accounts_debits_within_limit"
        await sql.rollback()
    assert (await ledger.get_account(alice.id)).balances.posted == 100


async def test_an_agreed_overdraft_is_a_hard_floor_for_sql_too(ledger: Ledger, sql: Sql) -> None:
    """With an overdraft of 50 the database accepts -50 and refuses -51."""
    bank = await settlement(ledger)
    bob = await customer(ledger, Limits(debits_must_not_exceed_credits=True, overdraft_limit=50))
    await book_by_hand(sql, bob.id, bank.id, 50)
    await sql.commit()
    with pytest.raises(errors.CheckViolation) as refused:
        await book_by_hand(sql, bob.id, bank.id, 1)
    assert refused.value.diag.constraint_name == "accounts_debits_within_limit"
    await sql.rollback()
    assert (await ledger.get_account(bob.id)).balances.posted == -50


# -- the entry chain ------------------------------------------------------------------------


async def test_an_entry_that_does_not_continue_its_accounts_chain_is_refused_at_once(
    ledger: Ledger, sql: Sql
) -> None:
    """An entry claiming a balance that is not previous + delta fails on INSERT."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 1000))
    transfer_id = uuid.uuid4()
    await insert_transfer(sql, transfer_id, "SINGLE_PHASE", bank.id, alice.id, 100)
    # After 1000 and a credit of 100 the chain says 1100, not 5100.
    with pytest.raises(errors.CheckViolation) as refused:
        await append_entry(sql, transfer_id, alice.id, "C", (100, 0), claimed_after=(0, 5100, 0, 0))
    assert str(refused.value).startswith(
        f"ledger invariant: entry for account {alice.id} does not continue its chain"
    )


async def test_an_entry_dated_before_the_accounts_last_entry_is_refused(
    ledger: Ledger, sql: Sql
) -> None:
    """History is in time order: back-dating an entry fails on INSERT."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 1000))
    transfer_id = uuid.uuid4()
    await insert_transfer(sql, transfer_id, "SINGLE_PHASE", bank.id, alice.id, 100)
    with pytest.raises(errors.CheckViolation) as refused:
        await sql.execute(
            "INSERT INTO ledger.entries (transfer_id, account_id, direction, posted_delta,"
            " pending_delta, debits_posted, credits_posted, debits_pending, credits_pending,"
            " created_at) VALUES (%s, %s, 'C', 100, 0, 0, 1100, 0, 0, now() - interval '1 day')",
            (transfer_id, alice.id),
        )
    assert str(refused.value).startswith(
        f"ledger invariant: entry for account {alice.id} is older than the one before"
    )


# -- append-only history --------------------------------------------------------------------

REWRITES = {
    "update a transfer's amount": "UPDATE ledger.transfers SET amount = 1 WHERE id = %(transfer)s",
    "update a transfer's code": "UPDATE ledger.transfers SET code = 99 WHERE id = %(transfer)s",
    "delete a transfer": "DELETE FROM ledger.transfers WHERE id = %(transfer)s",
    "update an entry": "UPDATE ledger.entries SET posted_delta = 1 WHERE transfer_id = %(transfer)s",
    "delete an entry": "DELETE FROM ledger.entries WHERE transfer_id = %(transfer)s",
    "update a failure": "UPDATE ledger.failed_transfers SET reason = 'X' WHERE id = %(failed)s",
    "delete a failure": "DELETE FROM ledger.failed_transfers WHERE id = %(failed)s",
    "truncate everything": "TRUNCATE ledger.transfers, ledger.entries, ledger.failed_transfers,"
    " ledger.expiring_holds",
    "truncate entries": "TRUNCATE ledger.entries",
    "truncate failures": "TRUNCATE ledger.failed_transfers",
}


@pytest.mark.parametrize("statement", REWRITES.values(), ids=REWRITES.keys())
async def test_history_cannot_be_rewritten(ledger: Ledger, sql: Sql, statement: str) -> None:
    """Transfers, entries and failed ids are append-only: UPDATE, DELETE, TRUNCATE are refused."""
    bank, alice = await settlement(ledger), await customer(ledger)
    made, _ = await ledger.create_transfer(single(bank, alice, 1000))
    refused_id = uuid.uuid4()
    with pytest.raises(TransferRefused):
        await ledger.create_transfer(
            NewTransfer(refused_id, TransferKind.SINGLE_PHASE, alice.id, bank.id, 10**6, "EUR")
        )
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        await sql.execute(statement, {"transfer": made.id, "failed": refused_id})
    assert re.match(
        r"ledger invariant: \w+ is append-only \((UPDATE|DELETE|TRUNCATE) refused\)",
        str(refused.value),
    )
    await sql.rollback()
    assert (await ledger.get_transfer(made.id)).amount == 1000
    assert len((await ledger.list_entries(alice.id, 10, "")).items) == 1


# -- holds and ids --------------------------------------------------------------------------


async def hold_of(ledger: Ledger, debit: Account, credit: Account, amount: int) -> NewTransfer:
    hold = NewTransfer(uuid.uuid4(), TransferKind.PENDING, debit.id, credit.id, amount, "EUR")
    await ledger.create_transfer(hold)
    return hold


async def test_a_hold_cannot_be_resolved_twice(ledger: Ledger, sql: Sql) -> None:
    """After a hold is posted, a hand-written void of it is refused by a unique index."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 1000))
    hold = await hold_of(ledger, alice, bank, 300)
    await ledger.create_transfer(
        NewTransfer(
            uuid.uuid4(), TransferKind.POST_PENDING, None, None, None, None, pending_id=hold.id
        )
    )
    with pytest.raises(errors.UniqueViolation) as refused:
        await insert_transfer(
            sql, uuid.uuid4(), "VOID_PENDING", alice.id, bank.id, 300, pending_id=hold.id
        )
    assert refused.value.diag.constraint_name == "transfers_one_resolution_per_hold"
    await sql.rollback()
    assert (await ledger.get_account(alice.id)).balances.posted == 700


async def test_a_resolution_that_does_not_match_its_hold_fails_at_commit(
    ledger: Ledger, sql: Sql
) -> None:
    """Posting more than a hold reserved is refused even when every chain adds up."""
    bank, alice = await settlement(ledger), await customer(ledger)
    await ledger.create_transfer(single(bank, alice, 1000))
    hold = await hold_of(ledger, alice, bank, 300)
    await book_by_hand(
        sql,
        alice.id,
        bank.id,
        400,
        kind="POST_PENDING",
        pending_id=hold.id,
        debit_legs=(400, -300),
        credit_legs=(400, -300),
    )
    refused = await refused_at_commit(sql)
    assert isinstance(refused, errors.CheckViolation)
    assert re.match(r"ledger invariant: transfer \S+ does not match its hold", str(refused))
    assert (await ledger.get_account(alice.id)).balances.posted == 1000


async def test_an_id_that_failed_can_never_become_a_transfer(ledger: Ledger, sql: Sql) -> None:
    """A burnt id inserted into transfers by hand is refused as already used."""
    bank, alice = await settlement(ledger), await customer(ledger)
    burnt = NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, alice.id, bank.id, 50, "EUR")
    with pytest.raises(TransferRefused) as refused_by_service:
        await ledger.create_transfer(burnt)
    assert refused_by_service.value.reason is Reason.INSUFFICIENT_FUNDS
    await ledger.create_transfer(single(bank, alice, 100))
    with pytest.raises(errors.UniqueViolation) as refused:
        await insert_transfer(sql, burnt.id, "SINGLE_PHASE", alice.id, bank.id, 50)
    assert str(refused.value).startswith(f"transfer id {burnt.id} is already used")


async def test_an_id_that_is_a_transfer_cannot_be_recorded_as_failed(
    ledger: Ledger, sql: Sql
) -> None:
    """The other way round: a transfer's id cannot also be a failure."""
    bank, alice = await settlement(ledger), await customer(ledger)
    made, _ = await ledger.create_transfer(single(bank, alice, 100))
    with pytest.raises(errors.UniqueViolation) as refused:
        await sql.execute(
            "INSERT INTO ledger.failed_transfers (id, reason, request_hash, failed_at)"
            " VALUES (%s, 'INSUFFICIENT_FUNDS', '\\x00', now())",
            (made.id,),
        )
    assert str(refused.value).startswith(f"transfer id {made.id} is already used")


# -- accounts ---------------------------------------------------------------------------------


async def test_a_closed_account_cannot_be_reopened_by_sql(ledger: Ledger, sql: Sql) -> None:
    """Closing is final in the database too."""
    alice = await customer(ledger)
    await ledger.close(alice.id)
    with pytest.raises(errors.CheckViolation) as refused:
        await sql.execute("UPDATE ledger.accounts SET status = 'ACTIVE' WHERE id = %s", (alice.id,))
    assert str(refused.value).startswith(f"ledger invariant: account {alice.id} is closed for good")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.accounts SET currency = 'USD' WHERE id = %s",
        "UPDATE ledger.accounts SET type = 'INTERNAL' WHERE id = %s",
        "UPDATE ledger.accounts SET created_at = created_at - interval '1 day' WHERE id = %s",
    ],
    ids=["currency", "type", "opening time"],
)
async def test_an_accounts_identity_cannot_change(ledger: Ledger, sql: Sql, statement: str) -> None:
    """Currency, type and opening time are fixed once an account exists."""
    alice = await customer(ledger)
    with pytest.raises(errors.CheckViolation) as refused:
        await sql.execute(statement, (alice.id,))
    assert str(refused.value).startswith(
        "ledger invariant: account id, currency, type and creation time are fixed"
    )
    await sql.rollback()
    assert (await ledger.get_account(alice.id)).currency == "EUR"
