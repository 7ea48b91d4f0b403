"""The recovery loop: finishes what a crash, a timeout or an outage left half-done.

Every few seconds it asks the database for payments that need a hand:

* PENDING for longer than `grace` (the process handling it died, or the
  ledger was down): re-score if no route was recorded (risk answers the same
  transaction id with its stored decision), then re-send the transfer or hold
  with the same derived id; the ledger answers EXISTS if it got it before;
* with a refund PENDING for longer than `grace`: re-send the refund transfer;
* IN_REVIEW with a reviewer's decision recorded: re-send the post or void;
* IN_REVIEW whose hold has passed its expiry time: ask the ledger whether it
  expired the hold, and if so mark the payment EXPIRED.

Each payment is taken with `try_hold`: one a live request (or another
replica's loop) is working on is skipped this round. `grace` only spares
requests still in flight a useless lock attempt; correctness comes from the lock.

A pass works on up to `concurrency` payments at once. After an outage of the
ledger hundreds of payments wait, each a few round trips to finish; one at a
time, the last of them waited half a minute in the chaos runs. The bound stays
well under the lock pool (`app.LOCK_POOL_SIZE`), so live requests keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from services.payment.domain.access import RECOVERY_ACTOR

from .payments import Payments
from .unit_of_work import Clock, StorageError, UnitOfWorkFactory

log = logging.getLogger("bankmesh.payment.recovery")

BATCH_SIZE = 100
CONCURRENCY = 8


class Recovery:
    def __init__(
        self,
        payments: Payments,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        grace_seconds: float = 5.0,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._payments = payments
        self._uow = uow
        self._clock = clock
        self._grace = timedelta(seconds=grace_seconds)
        self._concurrency = concurrency

    async def run_once(self) -> int:
        """One pass; returns how many payments it took up."""
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.payments.needing_attention(now, now - self._grace, BATCH_SIZE)
        slots = asyncio.Semaphore(self._concurrency)

        async def resume(payment_id: uuid.UUID) -> bool:
            async with slots:
                try:
                    return await self._payments.resume(payment_id, RECOVERY_ACTOR)
                except Exception:
                    # One stuck payment must not starve the others; it is retried next pass.
                    log.exception("recovery of payment %s failed; retrying next pass", payment_id)
                    return False

        return sum(await asyncio.gather(*(resume(payment_id) for payment_id in due)))

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                taken = await self.run_once()
                if taken:
                    log.info("recovery took up %d payment(s)", taken)
            except StorageError:
                log.warning("recovery skipped: the payment database is unavailable")
            await asyncio.sleep(interval)
