"""What every service's storage layer shares: errors, the clock, and a SQL transaction.

Storage failures leave the adapters already translated, so nothing above them
knows about psycopg or SQLAlchemy:

    StorageError
     ├── StorageUnavailable    the database cannot be reached; nothing was written
     └── WriteConflict         a concurrent transaction won a race (unique id,
                               serialization failure, deadlock); retrying is safe

`SqlTransaction` is one database transaction on a pooled connection: entered,
it begins; `commit()` commits; leaving without a commit rolls back; any driver
error raised inside it leaves as one of the errors above. A service's unit of
work subclasses it and attaches its repositories in `bind()`.

Audit events the transaction collects in `audit` (services.common.audit) are
appended by `commit()` as its last statement, so they commit or roll back with
the change they describe; a subclass names its chain in `audit_service`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self

import psycopg.errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.audit import store as audit_store


class StorageError(Exception):
    pass


class StorageUnavailable(StorageError):
    pass


class WriteConflict(StorageError):
    pass


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# Losing a race is normal under concurrency and retrying is safe: a retry
# re-reads under locks, and ids make repeated work answer "already done".
_CONFLICTS = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


def raise_translated(exc: Exception, what: str) -> None:
    """Re-raise a driver error as a storage error; return for anything else."""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, _CONFLICTS):
        raise WriteConflict(str(exc.orig)) from exc
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        raise StorageUnavailable(f"the {what} database is unreachable") from exc


class SqlTransaction:
    """One transaction; subclasses set `database` (for messages) and implement `bind`."""

    database = "service"
    audit_service = ""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self.audit = audit_store.AuditTrail()

    def bind(self, connection: AsyncConnection) -> None:
        """Attach the repositories to the transaction's connection."""

    @property
    def connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is used outside its `async with` block")
        return self._conn

    async def __aenter__(self) -> Self:
        try:
            self._conn = await self._engine.connect()
            await self._conn.begin()
        except Exception as exc:
            raise_translated(exc, self.database)
            raise
        self.bind(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self.connection
        try:
            if connection.in_transaction():
                await connection.rollback()
        except Exception:  # noqa: S110 - the connection is discarded; the original error matters
            pass
        finally:
            await connection.close()
        if isinstance(exc, Exception):
            raise_translated(exc, self.database)

    async def commit(self) -> None:
        if self.audit.events:
            # Last, because the chain's lock is held from this INSERT to the commit.
            events, self.audit.events = self.audit.events, []
            await audit_store.append(self.connection, self.audit_service or self.database, events)
        await self.connection.commit()
