"""Writing audit events, in the caller's transaction or in a short one of their own.

`AuditTrail` collects a unit of work's events; `SqlTransaction.commit()`
appends them as its last statement (one INSERT whatever their number), so
they commit or roll back with the change they describe, and the chain's
lock is held only from that INSERT to the commit.

`AuditWriter` is for events that belong to no business transaction: a
refused call (mesh.interceptors.authz). They queue in memory and a
background task writes them in batches, each in its own transaction; a
full queue drops events (and says so in the log) rather than slowing or
failing calls, so a flood of refused calls cannot become a denial of
service on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .events import AuditEvent

log = logging.getLogger("bankmesh.audit")

_INSERT = text(
    """
    INSERT INTO audit.events (occurred_at, service, actor, action, subject, outcome, source,
        details)
    SELECT occurred_at, :service, actor, action, subject, outcome, source, details
    FROM unnest(CAST(:occurred_at AS timestamptz[]), CAST(:actor AS text[]),
        CAST(:action AS text[]), CAST(:subject AS text[]), CAST(:outcome AS text[]),
        CAST(:source AS text[]), CAST(:details AS jsonb[]))
        WITH ORDINALITY AS e(occurred_at, actor, action, subject, outcome, source, details, n)
    ORDER BY n
    """
)
_HEAD = text("SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1")


async def append(connection: AsyncConnection, service: str, events: Sequence[AuditEvent]) -> None:
    """Append `events`, in order, on the caller's transaction: one statement."""
    if not events:
        return
    await connection.execute(
        _INSERT,
        {
            "service": service,
            "occurred_at": [e.occurred_at for e in events],
            "actor": [e.actor for e in events],
            "action": [e.action for e in events],
            "subject": [e.subject for e in events],
            "outcome": [e.outcome.value for e in events],
            "source": [e.source for e in events],
            "details": [Jsonb(e.details) for e in events],
        },
    )


async def head(connection: AsyncConnection) -> tuple[int, bytes] | None:
    """The newest row's seq and hash; None for an empty log."""
    row = (await connection.execute(_HEAD)).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


class AuditTrail:
    """The audit events of one unit of work, written when it commits."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def add(self, *events: AuditEvent) -> None:
        self.events.extend(events)

    def extend(self, events: Sequence[AuditEvent]) -> None:
        self.events.extend(events)


class AuditWriter:
    """Events outside any business transaction, written in the background in batches."""

    def __init__(
        self, engine: AsyncEngine, service: str, *, max_queued: int = 1000, batch: int = 200
    ) -> None:
        self._engine = engine
        self._service = service
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queued)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def submit(self, event: AuditEvent) -> None:
        """Queue `event`; never blocks, never raises."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("audit queue full: %d events dropped so far", self.dropped)
            return
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to write with
                self._task = asyncio.get_running_loop().create_task(
                    self._drain(), name=f"audit-writer-{self._service}"
                )

    async def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        if self._task is not None:
            await asyncio.shield(self._task)
        await self._drain()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()

    async def _drain(self) -> None:
        while not self._queue.empty():
            events = [self._queue.get_nowait()]
            while len(events) < self._batch and not self._queue.empty():
                events.append(self._queue.get_nowait())
            try:
                async with self._engine.begin() as connection:
                    await append(connection, self._service, events)
            except Exception:
                log.exception("could not write %d audit events", len(events))
