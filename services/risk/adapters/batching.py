"""Coalescing: concurrent calls share one database round trip.

At 16 scorings in flight, one statement per scoring on a connection of its
own spends most of the service's CPU in the driver and the pool (checkout,
pre-ping, BEGIN, COMMIT) rather than in scoring. A `Batcher` queues the
calls that arrive while a batch is running and hands them to `run` together
when it finishes: an idle service answers a lone call at once, a busy one
pays each round trip and commit once per batch.

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
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(self, run: RunBatch[T, R], *, max_batch: int = 256, name: str = "batch") -> None:
        self._run = run
        self._max = max_batch
        self._name = name
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain(), name=self._name)
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[T, asyncio.Future[R]]] = []
                while self._waiting and len(batch) < self._max:
                    item, future = self._waiting.popleft()
                    if not future.cancelled():
                        batch.append((item, future))
                if batch:
                    await self._run_one(batch)
        except asyncio.CancelledError:
            while self._waiting:
                self._waiting.popleft()[1].cancel()
            raise
        finally:
            self._worker = None

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
