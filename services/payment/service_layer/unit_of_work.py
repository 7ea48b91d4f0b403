"""The storage ports: one database transaction with a repository, and per-payment locks.

Storage failures surface as `StorageUnavailable` or `WriteConflict`
(services.common.storage), already translated by the adapter, so nothing
above this layer knows about psycopg or SQLAlchemy.

`PaymentLocks` serialises everything that changes one payment: the first
execution of an idempotency key, its resumption by a retry or by the
recovery loop, reviews and refunds. The adapter uses PostgreSQL advisory
locks held by a session, so a process that dies lets go of its locks with
its connections and another can take over.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

# The storage errors and the clock are the same for every service; they are
# re-exported here because this module is the use cases' port.
from services.common.storage import (
    Clock,
    StorageError,
    StorageUnavailable,
    SystemClock,
    WriteConflict,
)
from services.payment.domain.idempotency import IdempotencyRecord, StoredResponse
from services.payment.domain.model import Payment

__all__ = [
    "Clock",
    "StorageError",
    "StorageUnavailable",
    "SystemClock",
    "WriteConflict",
]


class LockTimeout(Exception):
    """Someone else still holds the payment's lock after the time we could wait."""


class PaymentRepository(Protocol):
    # -- idempotency keys --
    async def get_key(self, scope: str, key: str) -> IdempotencyRecord | None: ...

    async def add_key(self, record: IdempotencyRecord) -> bool:
        """Insert unless the key exists; True when this call created it."""
        ...

    async def store_response(
        self, scope: str, key: str, response: StoredResponse, now: datetime
    ) -> None:
        """Set the key's response unless one is stored already (the first answer wins)."""
        ...

    # -- payments --
    async def add(self, payment: Payment) -> bool: ...

    async def get(self, payment_id: uuid.UUID) -> Payment | None: ...

    async def save(self, payment: Payment) -> None:
        """Write changed fields, new history and refunds; WriteConflict if the version moved."""
        ...

    async def list_for_account(
        self, account_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Payment]:
        """Payments from or to the account, newest first, strictly before `before`."""
        ...

    # -- work for the recovery loop --
    async def needing_attention(
        self, now: datetime, stale_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        """Payments left mid-way: PENDING (or with a PENDING refund) since before
        `stale_before`, IN_REVIEW with a recorded decision, or IN_REVIEW with a
        hold due to expire by `now`."""
        ...


class UnitOfWork(Protocol):
    # Read-only, so an adapter may declare its concrete repository type.
    @property
    def payments(self) -> PaymentRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class PaymentLocks(Protocol):
    def hold(self, payment_id: uuid.UUID, wait: float) -> AbstractAsyncContextManager[None]:
        """Exclusive access to one payment, waiting at most `wait` seconds (LockTimeout)."""
        ...

    def try_hold(self, payment_id: uuid.UUID) -> AbstractAsyncContextManager[bool]:
        """Exclusive access if nobody has it now; yields whether we got it."""
        ...
