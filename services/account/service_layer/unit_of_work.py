"""The port the use cases talk to: one database transaction with a ledger repository.

Storage failures surface as `StorageUnavailable` or `WriteConflict`
(services.common.storage), already translated by the adapter, so nothing
above this layer knows about psycopg or SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from services.account.adapters.repository import LedgerRepository
from services.common.audit.store import AuditTrail

# The storage errors and the clock are the same for every service; they are
# re-exported here because this module is the use cases' port.
from services.common.storage import (
    Clock,
    StorageError,
    StorageUnavailable,
    SystemClock,
    WriteConflict,
)

__all__ = [
    "Clock",
    "StorageError",
    "StorageUnavailable",
    "SystemClock",
    "WriteConflict",
]


class UnitOfWork(Protocol):
    ledger: LedgerRepository
    # Audit events appended when the transaction commits (services.common.audit).
    audit: AuditTrail

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
