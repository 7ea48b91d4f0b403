"""The ledger's PostgreSQL repository: rows <-> domain values, nothing more.

Every method runs on the connection of the caller's transaction; the unit of
work (`unit_of_work.py`) owns begin/commit. Locks are taken here, always in
account-id order, so two batches touching the same accounts queue instead
of deadlocking. Every transfer a batch creates also becomes an audit event
of that transaction (services.common.audit), written with the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from sqlalchemy import RowMapping, and_, delete, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.account.domain.engine import BatchChanges, FailedTransfer
from services.account.domain.errors import Reason
from services.account.domain.model import (
    Account,
    AccountStatus,
    AccountType,
    Balances,
    Direction,
    Entry,
    Limits,
    PendingState,
    Transfer,
    TransferKind,
)
from services.common.audit.events import SYSTEM, AuditEvent, Origin, Outcome
from services.common.audit.store import AuditTrail

from . import tables as t

_RESOLUTION = t.transfers.alias("resolution")
_Item = TypeVar("_Item")

_INSERT_TRANSFERS = text(
    """
    INSERT INTO ledger.transfers (id, kind, debit_account_id, credit_account_id, amount,
        currency, pending_id, timeout_seconds, expires_at, code, metadata, request_hash,
        created_at)
    SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:kind AS text[]),
        CAST(:debit_account_id AS uuid[]), CAST(:credit_account_id AS uuid[]),
        CAST(:amount AS bigint[]), CAST(:currency AS text[]), CAST(:pending_id AS uuid[]),
        CAST(:timeout_seconds AS integer[]), CAST(:expires_at AS timestamptz[]),
        CAST(:code AS integer[]), CAST(:metadata AS jsonb[]), CAST(:request_hash AS bytea[]),
        CAST(:created_at AS timestamptz[]))
    """
)
_INSERT_ENTRIES = text(
    """
    INSERT INTO ledger.entries (transfer_id, account_id, direction, posted_delta,
        pending_delta, debits_posted, credits_posted, debits_pending, credits_pending,
        created_at)
    SELECT transfer_id, account_id, direction, posted_delta, pending_delta, debits_posted,
        credits_posted, debits_pending, credits_pending, created_at
    FROM unnest(CAST(:transfer_id AS uuid[]), CAST(:account_id AS uuid[]),
        CAST(:direction AS text[]), CAST(:posted_delta AS bigint[]),
        CAST(:pending_delta AS bigint[]), CAST(:debits_posted AS bigint[]),
        CAST(:credits_posted AS bigint[]), CAST(:debits_pending AS bigint[]),
        CAST(:credits_pending AS bigint[]), CAST(:created_at AS timestamptz[]))
        WITH ORDINALITY AS e(transfer_id, account_id, direction, posted_delta, pending_delta,
            debits_posted, credits_posted, debits_pending, credits_pending, created_at, n)
    ORDER BY n
    """
)
_INSERT_FAILED = text(
    """
    INSERT INTO ledger.failed_transfers (id, reason, request_hash, failed_at)
    SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:reason AS text[]),
        CAST(:request_hash AS bytea[]), CAST(:failed_at AS timestamptz[]))
    ON CONFLICT (id) DO NOTHING
    """
)
_INSERT_HOLDS = text(
    """
    INSERT INTO ledger.expiring_holds (transfer_id, debit_account_id, credit_account_id,
        expires_at)
    SELECT * FROM unnest(CAST(:transfer_id AS uuid[]), CAST(:debit_account_id AS uuid[]),
        CAST(:credit_account_id AS uuid[]), CAST(:expires_at AS timestamptz[]))
    """
)
_UPDATE_COUNTERS = text(
    """
    UPDATE ledger.accounts AS a
       SET debits_posted = c.dp, credits_posted = c.cp, debits_pending = c.dpe,
           credits_pending = c.cpe, updated_at = c.at, last_entry_at = c.at
      FROM unnest(CAST(:id AS uuid[]), CAST(:dp AS bigint[]), CAST(:cp AS bigint[]),
                  CAST(:dpe AS bigint[]), CAST(:cpe AS bigint[]),
                  CAST(:at AS timestamptz[])) AS c(id, dp, cp, dpe, cpe, at)
     WHERE a.id = c.id
    """
)


def _columns(items: Sequence[_Item], row: Callable[[_Item], dict[str, Any]]) -> dict[str, Any]:
    """Rows -> one list per column, the shape `unnest` wants."""
    rows = [row(item) for item in items]
    return {name: [r[name] for r in rows] for name in rows[0]}


class LedgerRepository:
    def __init__(self, connection: AsyncConnection, audit: AuditTrail | None = None) -> None:
        self._conn = connection
        self._audit = audit if audit is not None else AuditTrail()

    # -- accounts -------------------------------------------------------------

    async def add_account(self, account: Account) -> bool:
        """Insert unless the id exists; True when this call created it."""
        stmt = (
            pg_insert(t.accounts)
            .values(_account_row(account))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.accounts.c.id)
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def get_account(self, account_id: uuid.UUID, *, lock: bool = False) -> Account | None:
        stmt = select(t.accounts).where(t.accounts.c.id == account_id)
        if lock:
            stmt = stmt.with_for_update()
        row = (await self._conn.execute(stmt)).mappings().first()
        return _account(row) if row else None

    async def lock_accounts(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Account]:
        """SELECT ... FOR UPDATE in id order: the one lock order every writer uses."""
        if not ids:
            return {}
        stmt = (
            select(t.accounts)
            .where(t.accounts.c.id.in_(sorted(ids)))
            .order_by(t.accounts.c.id)
            .with_for_update()
        )
        rows = (await self._conn.execute(stmt)).mappings().all()
        return {row["id"]: _account(row) for row in rows}

    async def list_accounts(
        self, customer_id: str, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Account]:
        stmt = select(t.accounts).where(t.accounts.c.customer_id == customer_id)
        if after is not None:
            stmt = stmt.where(tuple_(t.accounts.c.created_at, t.accounts.c.id) > tuple_(*after))
        stmt = stmt.order_by(t.accounts.c.created_at, t.accounts.c.id).limit(limit)
        rows = (await self._conn.execute(stmt)).mappings().all()
        return [_account(row) for row in rows]

    async def set_status(self, account_id: uuid.UUID, status: AccountStatus, now: datetime) -> None:
        await self._conn.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(status=status.value, updated_at=now)
        )

    # -- transfers --------------------------------------------------------------

    async def get_transfers(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Transfer]:
        """Transfers by id, with the state of holds derived from their resolution (if any)."""
        if not ids:
            return {}
        stmt = (
            select(t.transfers, _RESOLUTION.c.kind.label("resolution_kind"))
            .select_from(
                t.transfers.outerjoin(_RESOLUTION, _RESOLUTION.c.pending_id == t.transfers.c.id)
            )
            .where(t.transfers.c.id.in_(list(ids)))
        )
        rows = (await self._conn.execute(stmt)).mappings().all()
        return {row["id"]: _transfer(row) for row in rows}

    async def get_failed(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Reason]:
        if not ids:
            return {}
        stmt = select(t.failed_transfers.c.id, t.failed_transfers.c.reason).where(
            t.failed_transfers.c.id.in_(list(ids))
        )
        return {row.id: Reason(row.reason) for row in await self._conn.execute(stmt)}

    async def holds_due_on(
        self, account_ids: Collection[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        """Overdue holds touching these accounts: a batch expires them before it runs."""
        if not account_ids:
            return []
        ids = list(account_ids)
        h = t.expiring_holds
        stmt = select(h.c.transfer_id).where(
            h.c.expires_at <= now,
            or_(h.c.debit_account_id.in_(ids), h.c.credit_account_id.in_(ids)),
        )
        return list((await self._conn.scalars(stmt)).all())

    async def due_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """The oldest overdue holds, for the expiry sweeper.

        No row lock here: the sweeper then locks the holds' accounts like any
        writer, and a hold someone resolved meanwhile is simply skipped.
        """
        h = t.expiring_holds
        stmt = select(h.c.transfer_id).where(h.c.expires_at <= now)
        stmt = stmt.order_by(h.c.expires_at).limit(limit)
        return list((await self._conn.scalars(stmt)).all())

    async def save(
        self,
        changes: BatchChanges,
        accounts: Mapping[uuid.UUID, Account],
        origins: Mapping[uuid.UUID, Origin] | None = None,
    ) -> None:
        """Write what a batch produced. The deferred triggers re-check it all at commit.

        Each table gets one statement whatever the batch size: the rows travel
        as arrays and `unnest` turns them back into rows, in order (entries
        must arrive in order: each continues the chain of the one before it).
        That keeps a batch of thousands of transfers at a handful of round
        trips, with statements the server can plan once. `origins` says who
        asked for each transfer, for its audit event (expiries are the
        ledger's own work).
        """
        if changes.created:
            await self._conn.execute(_INSERT_TRANSFERS, _columns(changes.created, _transfer_row))
            who = origins or {}
            self._audit.extend([_audit_event(tr, who.get(tr.id)) for tr in changes.created])
        if changes.entries:
            await self._conn.execute(_INSERT_ENTRIES, _columns(changes.entries, _entry_row))
        if changes.failed:
            await self._conn.execute(_INSERT_FAILED, _columns(changes.failed, _failed_row))
        holds = [tr for tr in changes.created if tr.expires_at is not None]
        if holds:
            await self._conn.execute(_INSERT_HOLDS, _columns(holds, _hold_row))
        if changes.resolved_pending:
            await self._conn.execute(
                delete(t.expiring_holds).where(
                    t.expiring_holds.c.transfer_id.in_(changes.resolved_pending)
                )
            )
        if changes.touched_accounts:
            touched = [accounts[i] for i in sorted(changes.touched_accounts)]
            await self._conn.execute(_UPDATE_COUNTERS, _columns(touched, _counters_row))

    # -- reads ----------------------------------------------------------------------

    async def list_entries(
        self, account_id: uuid.UUID, before: tuple[datetime, int] | None, limit: int
    ) -> list[Entry]:
        e, tr = t.entries, t.transfers
        stmt = (
            select(e, tr.c.kind, tr.c.code, tr.c.metadata, tr.c.currency)
            .select_from(e.join(tr, tr.c.id == e.c.transfer_id))
            .where(e.c.account_id == account_id)
        )
        if before is not None:
            stmt = stmt.where(tuple_(e.c.created_at, e.c.seq) < tuple_(*before))
        stmt = stmt.order_by(e.c.created_at.desc(), e.c.seq.desc()).limit(limit)
        rows = (await self._conn.execute(stmt)).mappings().all()
        return [_entry(row) for row in rows]

    async def counters_at(
        self, account_id: uuid.UUID, as_of: datetime
    ) -> tuple[int, int, int, int] | None:
        """The account's counters after its last entry at or before `as_of`."""
        e = t.entries
        stmt = (
            select(e.c.debits_posted, e.c.credits_posted, e.c.debits_pending, e.c.credits_pending)
            .where(and_(e.c.account_id == account_id, e.c.created_at <= as_of))
            .order_by(e.c.created_at.desc(), e.c.seq.desc())
            .limit(1)
        )
        row = (await self._conn.execute(stmt)).first()
        return None if row is None else (row[0], row[1], row[2], row[3])


# -- row mapping ------------------------------------------------------------------------


def _account_row(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "customer_id": a.customer_id,
        "currency": a.currency,
        "type": a.type.value,
        "status": a.status.value,
        "debits_must_not_exceed_credits": a.limits.debits_must_not_exceed_credits,
        "credits_must_not_exceed_debits": a.limits.credits_must_not_exceed_debits,
        "overdraft_limit": a.limits.overdraft_limit,
        "metadata": a.metadata,
        "debits_posted": a.debits_posted,
        "credits_posted": a.credits_posted,
        "debits_pending": a.debits_pending,
        "credits_pending": a.credits_pending,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "last_entry_at": a.last_entry_at,
    }


def _account(row: RowMapping) -> Account:
    return Account(
        id=row["id"],
        customer_id=row["customer_id"],
        currency=row["currency"],
        type=AccountType(row["type"]),
        status=AccountStatus(row["status"]),
        limits=Limits(
            debits_must_not_exceed_credits=row["debits_must_not_exceed_credits"],
            credits_must_not_exceed_debits=row["credits_must_not_exceed_debits"],
            overdraft_limit=row["overdraft_limit"],
        ),
        metadata=dict(row["metadata"]),
        debits_posted=row["debits_posted"],
        credits_posted=row["credits_posted"],
        debits_pending=row["debits_pending"],
        credits_pending=row["credits_pending"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_entry_at=row["last_entry_at"],
    )


def _counters_row(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "dp": a.debits_posted,
        "cp": a.credits_posted,
        "dpe": a.debits_pending,
        "cpe": a.credits_pending,
        "at": a.last_entry_at,
    }


def _hold_row(tr: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": tr.id,
        "debit_account_id": tr.debit_account_id,
        "credit_account_id": tr.credit_account_id,
        "expires_at": tr.expires_at,
    }


def _transfer_row(tr: Transfer) -> dict[str, Any]:
    return {
        "id": tr.id,
        "kind": tr.kind.value,
        "debit_account_id": tr.debit_account_id,
        "credit_account_id": tr.credit_account_id,
        "amount": tr.amount,
        "currency": tr.currency,
        "pending_id": tr.pending_id,
        "timeout_seconds": tr.timeout_seconds,
        "expires_at": tr.expires_at,
        "code": tr.code,
        "metadata": Jsonb(tr.metadata),
        "request_hash": tr.request_hash,
        "created_at": tr.created_at,
    }


def _audit_event(tr: Transfer, origin: Origin | None) -> AuditEvent:
    details: dict[str, Any] = {
        "debit_account_id": str(tr.debit_account_id),
        "credit_account_id": str(tr.credit_account_id),
        "amount": tr.amount,
        "currency": tr.currency,
    }
    if tr.pending_id is not None:
        details["pending_id"] = str(tr.pending_id)
    if tr.code:
        details["code"] = tr.code
    return AuditEvent.by(
        origin or Origin(SYSTEM),
        f"transfer.{tr.kind.value.lower()}",
        Outcome.SUCCESS,
        tr.created_at,
        str(tr.id),
        details,
    )


def _transfer(row: RowMapping) -> Transfer:
    kind = TransferKind(row["kind"])
    state = None
    if kind is TransferKind.PENDING:
        resolution = row.get("resolution_kind")
        state = PendingState.after(TransferKind(resolution)) if resolution else PendingState.PENDING
    return Transfer(
        id=row["id"],
        kind=kind,
        debit_account_id=row["debit_account_id"],
        credit_account_id=row["credit_account_id"],
        amount=row["amount"],
        currency=row["currency"],
        created_at=row["created_at"],
        pending_id=row["pending_id"],
        timeout_seconds=row["timeout_seconds"],
        expires_at=row["expires_at"],
        code=row["code"],
        metadata=dict(row["metadata"]),
        request_hash=bytes(row["request_hash"]),
        pending_state=state,
    )


def _entry_row(e: Entry) -> dict[str, Any]:
    b = e.balances_after
    return {
        "transfer_id": e.transfer_id,
        "account_id": e.account_id,
        "direction": e.direction.value,
        "posted_delta": e.posted_delta,
        "pending_delta": e.pending_delta,
        "debits_posted": b.debits_posted,
        "credits_posted": b.credits_posted,
        "debits_pending": b.debits_pending,
        "credits_pending": b.credits_pending,
        "created_at": e.created_at,
    }


def _entry(row: RowMapping) -> Entry:
    return Entry(
        transfer_id=row["transfer_id"],
        account_id=row["account_id"],
        kind=TransferKind(row["kind"]),
        direction=Direction(row["direction"]),
        posted_delta=row["posted_delta"],
        pending_delta=row["pending_delta"],
        balances_after=Balances(
            currency=row["currency"],
            debits_posted=row["debits_posted"],
            credits_posted=row["credits_posted"],
            debits_pending=row["debits_pending"],
            credits_pending=row["credits_pending"],
        ),
        created_at=row["created_at"],
        code=row["code"],
        metadata=dict(row["metadata"]),
        sequence=row["seq"],
    )


def _failed_row(f: FailedTransfer) -> dict[str, Any]:
    return {
        "id": f.id,
        "reason": f.reason.value,
        "request_hash": f.request_hash,
        "failed_at": f.failed_at,
    }
