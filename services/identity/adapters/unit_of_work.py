"""A SQLAlchemy transaction as the identity service's unit of work, with errors translated.

Any driver error raised inside `async with SqlUnitOfWork(...)` leaves it as a
`WriteConflict` (safe to retry) or `StorageUnavailable`; everything else
passes through untouched.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import psycopg.errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.identity.service_layer.unit_of_work import StorageUnavailable, WriteConflict

from .repository import IdentityRepository

# Losing a race is normal under concurrency; the caller re-reads and retries.
_CONFLICTS = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


class SqlUnitOfWork:
    identity: IdentityRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        try:
            self._conn = await self._engine.connect()
            await self._conn.begin()
        except Exception as exc:
            raise_translated(exc)
            raise
        self.identity = IdentityRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        except Exception:  # noqa: S110 - the connection is discarded; the original error matters
            pass
        finally:
            await self._conn.close()
        if isinstance(exc, Exception):
            raise_translated(exc)

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()


def raise_translated(exc: Exception) -> None:
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, _CONFLICTS):
        raise WriteConflict(str(exc.orig)) from exc
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        raise StorageUnavailable("the identity database is unreachable") from exc
    return None
