"""Per-payment locks: an asyncio lock in front of a PostgreSQL advisory lock.

The database lock is what makes one execution per payment true across
processes and replicas: `pg_advisory_lock` held by a *session*, on a
connection kept for as long as the work runs. If the process dies, its
connections close and PostgreSQL releases the lock, so a waiting request or
the recovery loop takes over; nothing has to expire first.

The asyncio lock in front keeps a storm of requests with one key inside one
process from taking a connection each just to wait: only the first goes to
the database; the others queue in memory and, by the time they get in, can
usually replay the stored answer.

Waiting is bounded: `lock_timeout` makes PostgreSQL give up after the
caller's remaining time, and the waiter then reports the key as in use. Lock
connections run in autocommit, so a free lock costs one round trip to take
and one to release.

Give the locks an engine (a connection pool) of their own. A lock holder
keeps its lock connection while it does the payment's work through the unit
of work's pool; were the pools one, enough concurrent payments would take
every connection as lock holders and then wait forever for one more to
write with (this froze the service at 64 concurrent payments).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

import psycopg.errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.storage import raise_translated
from services.payment.service_layer.unit_of_work import LockTimeout

log = logging.getLogger("bankmesh.payment")

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")


@dataclass(slots=True)
class _Local:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def lock_key(payment_id: UUID) -> int:
    """The advisory lock's bigint: the first 64 bits of the (uniformly random) uuid5."""
    return int.from_bytes(payment_id.bytes[:8], "big", signed=True)


class AdvisoryLocks:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._local: dict[UUID, _Local] = {}

    @asynccontextmanager
    async def hold(self, payment_id: UUID, wait: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with self._in_process(payment_id) as local:
            if local.locked() and wait <= 0:
                raise LockTimeout(f"payment {payment_id} is busy")
            try:
                async with asyncio.timeout(max(wait, 0)):
                    await local.acquire()
            except TimeoutError:
                raise LockTimeout(f"payment {payment_id} stayed busy for {wait:.1f}s") from None
            try:
                conn = await self._lock(payment_id, deadline - loop.time())
                try:
                    yield
                finally:
                    await asyncio.shield(self._unlock(conn, payment_id))
            finally:
                local.release()

    @asynccontextmanager
    async def try_hold(self, payment_id: UUID) -> AsyncIterator[bool]:
        async with self._in_process(payment_id) as local:
            if local.locked():
                yield False
                return
            await local.acquire()
            try:
                try:
                    conn = await self._lock(payment_id, wait=0)
                except LockTimeout:
                    yield False
                    return
                try:
                    yield True
                finally:
                    await asyncio.shield(self._unlock(conn, payment_id))
            finally:
                local.release()

    @asynccontextmanager
    async def _in_process(self, payment_id: UUID) -> AsyncIterator[asyncio.Lock]:
        """The payment's asyncio lock, forgotten once nobody uses or awaits it."""
        local = self._local.setdefault(payment_id, _Local())
        local.users += 1
        try:
            yield local.lock
        finally:
            local.users -= 1
            if local.users == 0:
                del self._local[payment_id]

    async def _connect(self) -> AsyncConnection:
        """A connection in autocommit: a session lock needs no transaction around it.

        Without one, taking and releasing a free lock is one round trip each,
        instead of BEGIN, the statement and COMMIT.
        """
        try:
            conn = await self._engine.connect()
        except Exception as exc:
            raise_translated(exc, "payment")
            raise
        return await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _lock(self, payment_id: UUID, wait: float) -> AsyncConnection:
        """A connection whose session holds the payment's advisory lock."""
        conn = await self._connect()
        key = lock_key(payment_id)
        try:
            # Nearly always free (one request per key at a time): try first.
            if not await conn.scalar(_TRY_LOCK, {"k": key}):
                if wait <= 0:
                    raise LockTimeout(f"payment {payment_id} is busy")
                await self._wait_for_lock(conn, key, wait)
        except LockTimeout:
            await conn.close()
            raise
        except DBAPIError as exc:
            await conn.close()
            if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise LockTimeout(f"payment {payment_id} stayed busy for {wait:.1f}s") from None
            raise_translated(exc, "payment")
            raise
        except BaseException:
            # Cancelled or failed half-way: the session may hold the lock; drop it.
            await conn.invalidate()
            raise
        return conn

    @staticmethod
    async def _wait_for_lock(conn: AsyncConnection, key: int, wait: float) -> None:
        """Block for the lock, but no longer than `wait`: PostgreSQL's lock_timeout says when."""
        await conn.execute(
            text("SELECT set_config('lock_timeout', :t, false)"),
            {"t": f"{max(int(wait * 1000), 1)}ms"},
        )
        try:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        finally:
            # The session goes back to the pool: it must not keep our timeout.
            await conn.execute(text("RESET lock_timeout"))

    async def _unlock(self, conn: AsyncConnection, payment_id: UUID) -> None:
        try:
            await conn.execute(_UNLOCK, {"k": lock_key(payment_id)})
            await conn.close()
        except BaseException:
            # A pooled connection must never keep a lock: closing the session releases it.
            log.warning("could not unlock payment %s; dropping the connection", payment_id)
            await conn.invalidate()
