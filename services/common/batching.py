"""Coalescing: concurrent calls share one database round trip and one commit.

One statement and one commit per call spends a busy service's CPU in the
driver and the pool (checkout, pre-ping, BEGIN, COMMIT) and caps it at what
PostgreSQL can commit. A `Batcher` queues the calls that arrive while a
batch is running and hands them to `run` together when it finishes: an idle
service answers a lone call at once, a busy one pays each round trip and
commit once per batch. The ledger's group commit
(services/account/service_layer/group_commit.py) and risk's decision store
are both one.

A batch holds at most `max_batch` of weight: by default each item weighs
one; the ledger weighs a submission by its number of transfers. An item
heavier than the cap still goes, alone.

Every caller waits for its own result, so nothing is acknowledged before the
batch it was in has committed. `run` returns one result per item, in order;
an item's result may be an exception, which is raised to that caller only.
An exception raised by `run` itself fails every caller of that batch. A
caller cancelled before its batch starts is left out of it.

The worker task exists only while there is work: it drains the queue and
ends, so nothing needs closing and no task outlives its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


def _one(item: object) -> int:
    return 1


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: RunBatch[T, R],
        *,
        max_batch: int = 256,
        weight: Callable[[T], int] = _one,
        name: str = "batch",
    ) -> None:
        self._run = run
        self._max = max_batch
        self._weight = weight
        self._name = name
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain(), name=self._name)
        return await future

    async def close(self) -> None:
        """Stop the worker; whoever still waits is cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                if batch:
                    await self._run_one(batch)
        except asyncio.CancelledError:
            while self._waiting:
                self._waiting.popleft()[1].cancel()
            raise
        finally:
            self._worker = None

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest waiting items up to the weight cap; at least one, however heavy."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        total = 0
        while self._waiting:
            item, future = self._waiting[0]
            if future.cancelled():
                self._waiting.popleft()
                continue
            weight = self._weight(item)
            if batch and total + weight > self._max:
                break
            self._waiting.popleft()
            batch.append((item, future))
            total += weight
        return batch

    async def _run_one(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
