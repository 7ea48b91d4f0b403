"""What the use cases need from the outside world, and how its failures look.

Adapters raise these exceptions and nothing driver-specific, so the service
layer knows neither redis-py nor psycopg:

    StorageUnavailable   PostgreSQL cannot be reached; nothing was stored
    StateUnavailable     Redis failed or was too slow; the fallback decides
"""

from __future__ import annotations

from typing import Protocol

from services.common.storage import Clock as Clock  # re-exported: part of this port
from services.common.storage import SystemClock as SystemClock
from services.risk.domain.model import History, StoredDecision, Transaction


class StorageUnavailable(Exception):
    pass


class StateUnavailable(Exception):
    pass


class StateStore(Protocol):
    async def observe(self, txn: Transaction) -> History:
        """The snapshot before `txn`, recording it (idempotent per transaction id)."""
        ...

    async def ping(self) -> bool: ...


class DecisionRepository(Protocol):
    async def by_transaction(self, transaction_id: str) -> StoredDecision | None: ...

    async def get(self, decision_id: str) -> StoredDecision | None: ...

    async def insert(self, decision: StoredDecision) -> StoredDecision:
        """Store it, or return the decision already stored for its transaction id."""
        ...

    async def ping(self) -> bool: ...
