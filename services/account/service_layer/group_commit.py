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

from collections.abc import Awaitable, Callable, Sequence

from services.account.domain.engine import TransferResult
from services.account.domain.model import NewTransfer
from services.common.batching import Batcher

Submission = list[NewTransfer]
RunBatch = Callable[[Sequence[Submission]], Awaitable[list[list[TransferResult]]]]

DEFAULT_MAX_TRANSFERS = 2_000


class GroupCommit(Batcher[Submission, list[TransferResult]]):
    """The shared `Batcher`, with a batch capped by its number of transfers."""

    def __init__(self, run: RunBatch, max_transfers: int = DEFAULT_MAX_TRANSFERS) -> None:
        super().__init__(run, max_batch=max_transfers, weight=len, name="ledger-group-commit")
