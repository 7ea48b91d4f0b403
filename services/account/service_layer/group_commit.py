"""Group commit: concurrent transfer requests share one database transaction.

One transfer per transaction caps the ledger at what PostgreSQL can commit,
and turns a hot account (every card payment crediting one settlement account)
into a queue on one row lock. TigerBeetle's answer is batching, and so is ours:
while a batch is being written, new submissions wait in line; when it
commits, everything waiting (up to `max_transfers`) goes into the next one. An
idle ledger therefore answers a lone request at once, and a busy one amortises
each commit, lock and round trip over many transfers.

Every submission keeps its own semantics (`LedgerBatch.apply_many`): results
per transfer, chains inside a submission, idempotency by id across the whole
batch exactly as if the submissions had come one after the other. A storage
error fails every submission of that batch with the same exception; a write
conflict is retried for the whole batch by the caller's `run`.

A caller that gives up (deadline, cancellation) does not take its transfers
out of a batch already running: they may commit, and a retry with the same
ids then answers EXISTS, which is what ids are for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from services.account.domain.engine import TransferResult
from services.account.domain.model import NewTransfer

Submission = list[NewTransfer]
Waiting = tuple[Submission, "asyncio.Future[list[TransferResult]]"]
RunBatch = Callable[[Sequence[Submission]], Awaitable[list[list[TransferResult]]]]

DEFAULT_MAX_TRANSFERS = 2_000


class GroupCommit:
    def __init__(self, run: RunBatch, max_transfers: int = DEFAULT_MAX_TRANSFERS) -> None:
        self._run = run
        self._max = max_transfers
        self._waiting: list[Waiting] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, requests: Submission) -> list[TransferResult]:
        future: asyncio.Future[list[TransferResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="ledger-group-commit")
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                batch = self._take()
                live = [(s, f) for s, f in batch if not f.cancelled()]
                if not live:
                    continue
                try:
                    results = await self._run([submission for submission, _ in live])
                except Exception as exc:
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(live, results, strict=True):
                        if not future.done():
                            future.set_result(result)

    def _take(self) -> list[Waiting]:
        """The oldest submissions up to the transfer cap; at least one, however large."""
        taken: list[Waiting] = []
        total = 0
        while self._waiting:
            size = len(self._waiting[0][0])
            if taken and total + size > self._max:
                break
            taken.append(self._waiting.pop(0))
            total += size
        return taken
