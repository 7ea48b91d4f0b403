"""The batcher behind group commit and the decision store: concurrent calls share one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.batching import Batcher


class Recorder:
    """A fake round trip: records each batch, answers each item doubled, fails on demand."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def run(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        if -1 in items:
            raise RuntimeError("the database is gone")
        return [ValueError(f"refused {i}") if i == 999 else i * 2 for i in items]


async def test_a_lone_call_is_answered_in_a_batch_of_its_own() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    assert await batcher.submit(21) == 42
    assert recorder.batches == [[21]]


async def test_calls_arriving_while_a_batch_runs_go_together_into_the_next() -> None:
    """The first call runs alone; the twenty that queue behind it share one batch."""
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.run)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 21)]
    await asyncio.sleep(0)
    recorder.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [i * 2 for i in range(1, 21)]
    assert recorder.batches == [[0], list(range(1, 21))]


async def test_batches_never_exceed_the_cap() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_batch=8)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(20))) == [
        i * 2 for i in range(20)
    ]
    assert [len(b) for b in recorder.batches] == [8, 8, 4]


async def test_an_item_refused_fails_only_its_own_caller() -> None:
    batcher = Batcher(Recorder().run)
    results = await asyncio.gather(
        *(batcher.submit(i) for i in (12, 999, 14)), return_exceptions=True
    )
    assert results[0] == 24 and results[2] == 28
    assert isinstance(results[1], ValueError)


async def test_a_failed_round_trip_fails_every_caller_of_that_batch_and_no_other() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.run)
    failed = await asyncio.gather(*(batcher.submit(i) for i in (1, -1)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert await batcher.submit(5) == 10


async def test_a_caller_cancelled_before_its_batch_is_left_out_of_it() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.run)
    running = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    assert (await running, await kept) == (2, 6)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.batches == [[1], [3]]
