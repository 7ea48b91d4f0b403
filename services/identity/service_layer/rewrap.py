"""Re-encrypting personal data under the newest data key (after `keys rotate-data`).

Rotation is two steps. Adding a key makes every new write use it while old
rows still decrypt with the key named in their ciphertext. This job then
walks the customers in id order, in batches of one transaction each, and
rewrites every row that has a ciphertext under an older key: open with the
old key, seal with the current one, and write only if the row still holds
what was read (a customer updated meanwhile was sealed with the current key
anyway). When it is done, `ciphertexts_by_key` shows no ciphertext under an
old key, and that key may leave the keyring.

The job is safe to stop and to run again: a row is either old or new, never
half of each, and a second run finds nothing to do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.identity.domain.events import EventKind, Outcome, SecurityEvent

from .ports import Clock, PersonalDataVault
from .unit_of_work import UnitOfWorkFactory

BATCH_SIZE = 200


@dataclass(frozen=True, slots=True)
class RewrapReport:
    key_id: int
    rows_rewritten: int
    ciphertexts_by_key: dict[int, int]


async def ciphertexts_by_key(uow: UnitOfWorkFactory) -> dict[int, int]:
    async with uow() as work:
        return await work.identity.ciphertexts_by_key()


async def rewrap_personal_data(
    uow: UnitOfWorkFactory,
    vault: PersonalDataVault,
    clock: Clock,
    *,
    actor: str,
    batch_size: int = BATCH_SIZE,
) -> RewrapReport:
    key_id = vault.current_key_id
    rewritten = 0
    after: uuid.UUID | None = None
    while True:
        async with uow() as work:
            batch = await work.identity.customers_not_on_key(key_id, after, batch_size)
            for customer_id, sealed in batch:
                fresh = vault.seal(customer_id, vault.open(customer_id, sealed))
                if await work.identity.replace_sealed(customer_id, sealed, fresh):
                    rewritten += 1
            await work.commit()
        if len(batch) < batch_size:
            break
        after = batch[-1][0]
    async with uow() as work:
        await work.identity.record(
            SecurityEvent(
                EventKind.PERSONAL_DATA_REWRAPPED,
                Outcome.SUCCESS,
                clock.now(),
                actor=actor,
                details={"key_id": str(key_id), "rows": str(rewritten)},
            )
        )
        usage = await work.identity.ciphertexts_by_key()
        await work.commit()
    return RewrapReport(key_id, rewritten, usage)
