"""Use cases of the account service: plain async functions over a unit of work.

Writers follow one recipe: read what is immutable, lock the accounts involved
in id order, re-read what locks protect, let the domain engine decide, write
its changes, commit. A `WriteConflict` (a concurrent transaction inserted the
same transfer id first) is retried from the top; the retry then answers
EXISTS or ID_ALREADY_FAILED like any other repeat.

Every change is also an audit event of its own transaction (who, what,
when, where, outcome; services.common.audit): each transfer created (the
repository adds those), accounts opened, frozen, unfrozen and closed, and
refusals to show or touch someone else's account.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.account.domain.engine import (
    MAX_BATCH_SIZE,
    LedgerBatch,
    LedgerView,
    Outcome,
    TransferResult,
    account_ids_of,
)
from services.account.domain.errors import (
    AccountNotFound,
    InvalidRequest,
    PermissionDenied,
    Reason,
    TransferNotFound,
    TransferRefused,
    describe,
)
from services.account.domain.model import (
    EVERYONE,
    Account,
    AccountType,
    Balances,
    Entry,
    Limits,
    NewTransfer,
    Transfer,
    Viewer,
)
from services.account.domain.model import (
    open_account as new_account,
)
from services.common.audit.events import AuditEvent
from services.common.audit.events import Outcome as AuditOutcome
from services.common.audit.origin import current_origin
from services.common.errors import ServiceError

from . import pagination
from .group_commit import GroupCommit
from .unit_of_work import Clock, StorageError, UnitOfWork, UnitOfWorkFactory, WriteConflict

log = logging.getLogger("bankmesh.account")

MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class OpenAccount:
    currency: str
    account_type: AccountType
    customer_id: str = ""
    account_id: uuid.UUID | None = None
    limits: Limits | None = None
    metadata: dict[str, str] = field(default_factory=dict)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class Ledger:
    """The account service's use cases, bound to a unit-of-work factory and a clock."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, group_commit: bool = True) -> None:
        self._uow = uow
        self._clock = clock
        # Concurrent transfer calls share transactions (see group_commit.py);
        # off, each call is its own transaction.
        self._group_commit = GroupCommit(self._commit_batch) if group_commit else None

    async def shutdown(self) -> None:
        """Stop the group-commit worker (at process exit)."""
        if self._group_commit is not None:
            await self._group_commit.close()

    # -- accounts -----------------------------------------------------------------

    async def open_account(
        self, cmd: OpenAccount, viewer: Viewer = EVERYONE
    ) -> tuple[Account, bool]:
        """The account and whether this call created it (False: an identical one existed)."""
        if viewer.customer_id is not None:
            try:
                cmd = _own_customer_account(cmd, viewer.customer_id)
            except PermissionDenied as exc:
                await self._record_denial("account.open", str(cmd.account_id or ""), exc)
                raise
        account = new_account(
            account_id=cmd.account_id,
            customer_id=cmd.customer_id,
            currency=cmd.currency,
            account_type=cmd.account_type,
            limits=cmd.limits,
            metadata=cmd.metadata,
            now=self._clock.now(),
        )
        async with self._uow() as uow:
            created = await uow.ledger.add_account(account)
            if not created:
                existing = await uow.ledger.get_account(account.id)
                assert existing is not None
                if not existing.same_definition_as(account):
                    raise InvalidRequest(
                        f"account {account.id} exists with other fields",
                        reason=Reason.ACCOUNT_ALREADY_EXISTS,
                        field="account_id",
                    )
                return existing, False
            uow.audit.add(
                AuditEvent.by(
                    current_origin(),
                    "account.opened",
                    AuditOutcome.SUCCESS,
                    account.created_at or self._clock.now(),
                    str(account.id),
                    {
                        "customer_id": account.customer_id,
                        "currency": account.currency,
                        "type": account.type.value,
                    },
                )
            )
            await uow.commit()
        return account, True

    async def get_account(self, account_id: uuid.UUID, viewer: Viewer = EVERYONE) -> Account:
        async with self._uow() as uow:
            return await self._existing_account(uow, account_id, viewer)

    async def list_accounts(
        self, customer_id: str, size: int, token: str, viewer: Viewer = EVERYONE
    ) -> Page[Account]:
        if viewer.customer_id is not None:
            customer_id = customer_id or viewer.customer_id
            if customer_id != viewer.customer_id:
                denied = PermissionDenied(
                    "customers can list only their own accounts", field="customer_id"
                )
                await self._record_denial("account.list", f"customer:{customer_id}", denied)
                raise denied
        if not customer_id:
            raise InvalidRequest("customer_id is required", field="customer_id")
        limit = pagination.page_size(size)
        scope = f"accounts:{customer_id}"
        after = pagination.decode(scope, token, _after_account)
        async with self._uow() as uow:
            accounts = await uow.ledger.list_accounts(customer_id, after, limit + 1)
        next_token = ""
        if len(accounts) > limit:
            accounts = accounts[:limit]
            last = accounts[-1]
            assert last.created_at is not None
            next_token = pagination.encode(scope, [last.created_at.isoformat(), str(last.id)])
        return Page(accounts, next_token)

    async def freeze(self, account_id: uuid.UUID) -> Account:
        return await self._change_status(account_id, Account.freeze, "account.frozen")

    async def unfreeze(self, account_id: uuid.UUID) -> Account:
        return await self._change_status(account_id, Account.unfreeze, "account.unfrozen")

    async def close(self, account_id: uuid.UUID) -> Account:
        return await self._change_status(account_id, Account.close, "account.closed")

    async def _change_status(
        self, account_id: uuid.UUID, change: Callable[[Account], None], action: str
    ) -> Account:
        now = self._clock.now()
        origin = current_origin()
        try:
            async with self._uow() as uow:
                batch = await _load_batch(uow, [], now, extra_accounts={account_id})
                account = batch.view.accounts.get(account_id)
                if account is None:
                    raise AccountNotFound(
                        f"account {account_id} does not exist", field="account_id"
                    )
                batch.expire_due()  # an overdue hold no longer counts against closing
                before = account.status
                change(account)
                account.updated_at = now
                await uow.ledger.save(batch.changes, batch.view.accounts)
                await uow.ledger.set_status(account_id, account.status, now)
                details = {"from": before.value, "to": account.status.value}
                uow.audit.add(
                    AuditEvent.by(
                        origin, action, AuditOutcome.SUCCESS, now, str(account_id), details
                    )
                )
                await uow.commit()
        except ServiceError as refused:
            # An attempt refused is an admin action too: recorded, with why.
            details = {"reason": str(refused.reason), "message": refused.message}
            await self._record(
                AuditEvent.by(origin, action, AuditOutcome.FAILURE, now, str(account_id), details)
            )
            raise
        return account

    # -- transfers ----------------------------------------------------------------

    async def create_transfers(self, requests: Sequence[NewTransfer]) -> list[TransferResult]:
        """One result per request, in order, all committed together."""
        if len(requests) > MAX_BATCH_SIZE:
            raise InvalidRequest(
                f"at most {MAX_BATCH_SIZE} transfers per call", reason=Reason.BATCH_TOO_LARGE
            )
        if not requests:
            return []
        if self._group_commit is not None:
            return await self._group_commit.submit(list(requests))
        return (await self._commit_batch([list(requests)]))[0]

    async def _commit_batch(
        self, submissions: Sequence[Sequence[NewTransfer]]
    ) -> list[list[TransferResult]]:
        """One transaction for all `submissions`; a lost race retries the whole batch."""
        everything = [request for submission in submissions for request in submission]
        origins = {r.id: r.requested_by for r in everything if r.requested_by is not None}
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with self._uow() as uow:
                    batch = await _load_batch(uow, everything, self._clock.now())
                    results = batch.apply_many(submissions)
                    await uow.ledger.save(batch.changes, batch.view.accounts, origins)
                    await uow.commit()
                    return results
            except WriteConflict:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                # Jittered backoff: the winner of the race is committing right now.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311
        raise AssertionError("unreachable")

    async def create_transfer(self, request: NewTransfer) -> tuple[Transfer, bool]:
        """The transfer and whether it already existed; TransferRefused otherwise."""
        (result,) = await self.create_transfers([_unlinked(request)])
        if result.outcome is Outcome.FAILED:
            assert result.reason is not None
            raise TransferRefused(describe(result.reason), reason=result.reason)
        assert result.transfer is not None
        return result.transfer, result.outcome is Outcome.EXISTS

    async def get_transfer(self, transfer_id: uuid.UUID) -> Transfer:
        async with self._uow() as uow:
            found = await uow.ledger.get_transfers([transfer_id])
        if transfer_id not in found:
            raise TransferNotFound(
                f"transfer {transfer_id} does not exist",
                reason=Reason.PENDING_TRANSFER_NOT_FOUND,
                field="transfer_id",
            )
        return found[transfer_id]

    async def expire_due_holds(self, limit: int = 500) -> int:
        """Release holds whose timeout passed; returns how many. Run periodically."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.ledger.due_holds(now, limit)
            if not due:
                return 0
            batch = await _load_batch(uow, [], now, extra_pending=set(due))
            expired = batch.expire_due()
            await uow.ledger.save(batch.changes, batch.view.accounts)
            await uow.commit()
        return len(expired)

    # -- statements and balances --------------------------------------------------

    async def list_entries(
        self, account_id: uuid.UUID, size: int, token: str, viewer: Viewer = EVERYONE
    ) -> Page[Entry]:
        limit = pagination.page_size(size)
        scope = f"entries:{account_id}"
        before = pagination.decode(scope, token, _before_entry)
        async with self._uow() as uow:
            account = await self._existing_account(uow, account_id, viewer)
            entries = await uow.ledger.list_entries(account_id, before, limit + 1)
        entries = [_in_account_terms(e, account) for e in entries]
        next_token = ""
        if len(entries) > limit:
            entries = entries[:limit]
            last = entries[-1]
            next_token = pagination.encode(scope, [last.created_at.isoformat(), last.sequence])
        return Page(entries, next_token)

    async def balance_at(
        self, account_id: uuid.UUID, as_of: datetime | None, viewer: Viewer = EVERYONE
    ) -> Balances:
        async with self._uow() as uow:
            account = await self._existing_account(uow, account_id, viewer)
            if as_of is None:
                return account.balances
            counters = await uow.ledger.counters_at(account_id, as_of)
        dp, cp, dpe, cpe = counters or (0, 0, 0, 0)
        return Balances(account.currency, dp, cp, dpe, cpe, account.type.debit_normal)

    # -- audit --------------------------------------------------------------------

    async def _existing_account(
        self, uow: UnitOfWork, account_id: uuid.UUID, viewer: Viewer = EVERYONE
    ) -> Account:
        account = await uow.ledger.get_account(account_id)
        if account is not None and not viewer.may_see(account):
            # The answer is "not found" (ids cannot be probed); the log says what it was.
            uow.audit.add(
                AuditEvent.by(
                    current_origin(),
                    "account.access",
                    AuditOutcome.DENIED,
                    self._clock.now(),
                    str(account_id),
                    {"reason": "not the customer's account"},
                )
            )
            await uow.commit()
        return _visible(account, account_id, viewer)

    async def _record_denial(self, action: str, subject: str, refused: ServiceError[Any]) -> None:
        details = {"reason": str(refused.reason), "message": refused.message}
        await self._record(
            AuditEvent.by(
                current_origin(), action, AuditOutcome.DENIED, self._clock.now(), subject, details
            )
        )

    async def _record(self, event: AuditEvent) -> None:
        """An event of its own, for a refusal that changed nothing else."""
        try:
            async with self._uow() as uow:
                uow.audit.add(event)
                await uow.commit()
        except StorageError:
            # The refusal stands either way; its answer should not become UNAVAILABLE.
            log.warning("audit event %s for %s could not be written", event.action, event.subject)


async def _load_batch(
    uow: UnitOfWork,
    requests: Sequence[NewTransfer],
    now: datetime,
    *,
    extra_accounts: set[uuid.UUID] | None = None,
    extra_pending: set[uuid.UUID] | None = None,
) -> LedgerBatch:
    """Lock and load everything a batch may touch, then hand it to the engine."""
    ledger = uow.ledger
    # Transfers never change, so reading the holds a batch names needs no lock;
    # their accounts join the lock set.
    pending_ids = {r.pending_id for r in requests if r.pending_id is not None}
    pending_ids |= extra_pending or set()
    holds = await ledger.get_transfers(pending_ids)
    account_ids = account_ids_of(requests) | (extra_accounts or set())
    for hold in holds.values():
        account_ids |= {hold.debit_account_id, hold.credit_account_id}
    # Overdue holds on these accounts are expired first, so a limit check never
    # counts money whose hold has lapsed. Their other accounts must be locked too.
    due = set(await ledger.holds_due_on(account_ids, now))
    for hold in (await ledger.get_transfers(due - holds.keys())).values():
        account_ids |= {hold.debit_account_id, hold.credit_account_id}
    accounts = await ledger.lock_accounts(account_ids)
    # Under the locks: the current state of the holds and whether ids are taken.
    ids = {r.id for r in requests}
    transfers = await ledger.get_transfers(ids | pending_ids | due)
    if pending_ids & (transfers.keys() - holds.keys()):
        # A hold the batch names was committed after the unlocked read above,
        # so its accounts are not locked: start again; the retry locks them.
        raise WriteConflict("a pending transfer appeared while the batch was loading")
    failed = await ledger.get_failed(ids)
    return LedgerBatch(LedgerView(accounts, transfers, failed), now)


def _visible(account: Account | None, account_id: uuid.UUID, viewer: Viewer) -> Account:
    # Someone else's account reads exactly like a missing one: ids cannot be probed.
    if account is None or not viewer.may_see(account):
        raise AccountNotFound(f"account {account_id} does not exist", field="account_id")
    return account


def _own_customer_account(cmd: OpenAccount, customer_id: str) -> OpenAccount:
    """A customer opens plain customer accounts for themselves, nothing else.

    Customers cannot choose the account id either: with a chosen id, "created"
    versus "exists" would tell whether an id is somebody's account.
    """
    if cmd.account_id is not None:
        raise PermissionDenied(
            "customers cannot choose an account id; the ledger assigns one", field="account_id"
        )
    if cmd.customer_id not in ("", customer_id):
        raise PermissionDenied("customers open accounts only for themselves", field="customer_id")
    if cmd.account_type is not AccountType.CUSTOMER or cmd.limits is not None:
        raise PermissionDenied(
            "customers open customer accounts with the standard limits only", field="type"
        )
    return replace(cmd, customer_id=customer_id)


def _in_account_terms(entry: Entry, account: Account) -> Entry:
    balances = replace(entry.balances_after, debit_normal=account.type.debit_normal)
    return replace(entry, balances_after=balances)


def _unlinked(request: NewTransfer) -> NewTransfer:
    return replace(request, linked=False) if request.linked else request


def _after_account(position: list[Any]) -> tuple[datetime, uuid.UUID]:
    created_at, account_id = position
    if not isinstance(account_id, str):
        raise TypeError("account id must be a string")
    return datetime.fromisoformat(created_at), uuid.UUID(account_id)


def _before_entry(position: list[Any]) -> tuple[datetime, int]:
    created_at, sequence = position
    if type(sequence) is not int:  # not isinstance: JSON true would pass as a bool
        raise TypeError("sequence must be an integer")
    return datetime.fromisoformat(created_at), sequence
