"""A clock tests can move forward, so hold expiry needs no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SteppingClock:
    """Real time plus an offset that only grows."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
