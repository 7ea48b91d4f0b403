"""The port the use cases talk to: one database transaction with a ledger repository.

Storage failures surface as the two exceptions below, already translated by
the adapter, so nothing above this layer knows about psycopg or SQLAlchemy:

    StorageError
     ├── StorageUnavailable    the database cannot be reached; nothing was written
     └── WriteConflict         a concurrent transaction won a race (unique id,
                               serialization failure); retrying is safe
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self

from services.account.adapters.repository import LedgerRepository


class StorageError(Exception):
    pass


class StorageUnavailable(StorageError):
    pass


class WriteConflict(StorageError):
    pass


class UnitOfWork(Protocol):
    ledger: LedgerRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
