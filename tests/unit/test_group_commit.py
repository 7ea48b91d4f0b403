"""Group commit: concurrent submissions share one run, and each gets its own answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from services.account.domain.engine import Outcome, TransferResult
from services.account.domain.model import NewTransfer, TransferKind
from services.account.service_layer.group_commit import GroupCommit


def request() -> NewTransfer:
    return NewTransfer(
        uuid.uuid4(), TransferKind.SINGLE_PHASE, uuid.uuid4(), uuid.uuid4(), 1, "EUR"
    )


class RecordingRun:
    """Stands in for the database batch: records batch sizes, answers CREATED."""

    def __init__(self, delay: float = 0.01, fail: Exception | None = None) -> None:
        self.batches: list[int] = []
        self.delay = delay
        self.fail = fail

    async def __call__(
        self, submissions: Sequence[list[NewTransfer]]
    ) -> list[list[TransferResult]]:
        self.batches.append(len(submissions))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return [[TransferResult(r.id, Outcome.CREATED) for r in s] for s in submissions]


async def test_concurrent_submissions_share_batches_and_get_their_own_results() -> None:
    """Fifty callers at once need far fewer runs than fifty, and each gets its own ids back."""
    run = RecordingRun()
    commit = GroupCommit(run)
    submissions = [[request()] for _ in range(50)]
    results = await asyncio.gather(*(commit.submit(s) for s in submissions))
    await commit.close()
    assert [r[0].transfer_id for r in results] == [s[0].id for s in submissions]
    assert sum(run.batches) == 50
    assert len(run.batches) <= 3


async def test_a_lone_request_is_not_kept_waiting_for_company() -> None:
    """An idle ledger runs a single submission at once."""
    run = RecordingRun(delay=0)
    commit = GroupCommit(run)
    await asyncio.wait_for(commit.submit([request()]), timeout=1)
    await commit.close()
    assert run.batches == [1]


async def test_a_batch_never_exceeds_the_transfer_cap() -> None:
    """Waiting submissions are split so no run holds more than max_transfers."""
    run = RecordingRun()
    commit = GroupCommit(run, max_transfers=10)
    await asyncio.gather(*(commit.submit([request(), request(), request()]) for _ in range(9)))
    await commit.close()
    assert max(run.batches) <= 3  # three submissions of three transfers make nine <= 10


async def test_a_failed_run_fails_every_submission_in_it() -> None:
    """A storage error reaches each caller of that batch, not just one."""
    commit = GroupCommit(RecordingRun(fail=ConnectionError("database down")))
    outcomes = await asyncio.gather(
        *(commit.submit([request()]) for _ in range(5)), return_exceptions=True
    )
    await commit.close()
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    """Cancelling one waiting caller leaves the rest of the batch to finish normally."""
    commit = GroupCommit(RecordingRun(delay=0.05))
    first = asyncio.create_task(commit.submit([request()]))
    await asyncio.sleep(0.01)  # the first batch is running; the next ones wait
    doomed = asyncio.create_task(commit.submit([request()]))
    survivor = asyncio.create_task(commit.submit([request()]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert len(await first) == 1
    assert len(await survivor) == 1
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await commit.close()
