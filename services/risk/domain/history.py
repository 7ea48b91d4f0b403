"""What the service remembers between transactions, and exactly how.

The production store is Redis (adapters/redis_state.py, one Lua script per
transaction so that reading the snapshot and recording the transaction are a
single atomic step). `InMemoryState` here is the executable specification of
that script: the same structures, pruning, caps and expiry, driven by the
transaction's own clock. Training replays the synthetic stream through it,
and a test replays one stream through both and compares every snapshot, so
the model is trained on the features serving will compute.

Per transaction, the store:

1. answers from the transaction's marker if the id was seen before (a retry
   gets the very snapshot the first attempt got, and changes nothing);
2. prunes velocity entries older than the longest window, devices and payees
   older than their retention;
3. reads the snapshot (`History`) *before* the transaction;
4. records the transaction: velocity entries for the source account, the
   device and the destination; the device among the customer's devices and
   the destination among the source's payees (score = last seen); the amount
   at the head of the source's recent amounts; the position as the customer's
   last fix when it is newer than the stored one; and the marker;
5. sets a time to live on every key it wrote, so idle state disappears.

Windows are half-open, (t - w, t]: an entry exactly w old has left the window.
Sorted sets are capped at `velocity_cap` members (oldest dropped first), which
bounds the work per transaction for very busy accounts; counts saturate there.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .model import GeoFix, GeoPoint, History, Transaction
from .ruleset import StateSettings

DAY_MS = 86_400_000
MARKER_TTL_MS = DAY_MS
VELOCITY_TTL_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True)
class StateParams:
    """StateSettings in the units the store works in (milliseconds, counts)."""

    windows_ms: tuple[int, ...]
    velocity_ttl_ms: int
    device_retention_ms: int
    payee_retention_ms: int
    amounts_ttl_ms: int
    geo_ttl_ms: int
    recent_amounts: int
    cap: int
    marker_ttl_ms: int = MARKER_TTL_MS

    @staticmethod
    def from_settings(s: StateSettings) -> StateParams:
        windows_ms = tuple(w * 1000 for w in s.windows_seconds)
        return StateParams(
            windows_ms=windows_ms,
            velocity_ttl_ms=windows_ms[-1] + VELOCITY_TTL_SLACK_MS,
            device_retention_ms=s.device_retention_days * DAY_MS,
            payee_retention_ms=s.payee_retention_days * DAY_MS,
            # A source's usual amounts are as durable as its usual payees.
            amounts_ttl_ms=s.payee_retention_days * DAY_MS,
            geo_ttl_ms=s.geo_retention_days * DAY_MS,
            recent_amounts=s.recent_amounts,
            cap=s.velocity_cap,
        )


@dataclass
class _SortedSet:
    """A Redis sorted set: members ordered by (score, member), with an expiry."""

    entries: list[tuple[int, str]] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    expires_at: int = 0

    def prune_below(self, bound: int) -> None:
        """Drop entries with score < bound (ZREMRANGEBYSCORE key -inf (bound)."""
        cut = bisect.bisect_left(self.entries, (bound, ""))
        for _, member in self.entries[:cut]:
            del self.scores[member]
        del self.entries[:cut]

    def count(self, low_exclusive: int, high: int) -> int:
        lo = bisect.bisect_right(self.entries, (low_exclusive, "\U0010ffff"))
        hi = bisect.bisect_right(self.entries, (high, "\U0010ffff"))
        return max(hi - lo, 0)

    def items(self, low_exclusive: int, high: int) -> list[tuple[int, str]]:
        lo = bisect.bisect_right(self.entries, (low_exclusive, "\U0010ffff"))
        hi = bisect.bisect_right(self.entries, (high, "\U0010ffff"))
        return self.entries[lo:hi]

    def last_at_or_before(self, t: int) -> int | None:
        hi = bisect.bisect_right(self.entries, (t, "\U0010ffff"))
        return self.entries[hi - 1][0] if hi else None

    def add(self, score: int, member: str, *, greater_only: bool = False) -> None:
        old = self.scores.get(member)
        if old is not None:
            if greater_only and score <= old:
                return
            self.entries.remove((old, member))
        self.scores[member] = score
        bisect.insort(self.entries, (score, member))

    def cap(self, size: int) -> None:
        if len(self.entries) > size:
            self.prune_rank(len(self.entries) - size)

    def prune_rank(self, n: int) -> None:
        for _, member in self.entries[:n]:
            del self.scores[member]
        del self.entries[:n]


@dataclass
class _Fix:
    fix: GeoFix
    expires_at: int


@dataclass
class _Amounts:
    values: list[int]
    expires_at: int


class InMemoryState:
    """The Redis script's semantics in plain Python, with time taken from the transactions."""

    def __init__(self, params: StateParams) -> None:
        self.params = params
        self._zsets: dict[str, _SortedSet] = {}
        self._amounts: dict[str, _Amounts] = {}
        self._fixes: dict[str, _Fix] = {}
        self._markers: dict[str, tuple[History, int]] = {}

    def _zset(self, key: str, now: int) -> _SortedSet:
        z = self._zsets.get(key)
        if z is None or z.expires_at <= now or not z.entries:
            z = self._zsets[key] = _SortedSet()
        return z

    def observe(self, txn: Transaction) -> History:
        p = self.params
        t = txn.occurred_ms
        marker = self._markers.get(txn.transaction_id)
        if marker is not None and marker[1] > t:
            return marker[0]

        src = self._zset(f"vs:{txn.source_account_id}", t)
        dst = self._zset(f"vt:{txn.destination_account_id}", t)
        dev = self._zset(f"vd:{txn.device_id}", t) if txn.device_id else None
        devices = self._zset(f"dv:{txn.customer_id}", t)
        payees = self._zset(f"py:{txn.source_account_id}", t)
        oldest = t - p.windows_ms[-1]
        for z in (src, dst, dev):
            if z is not None:
                z.prune_below(oldest)
        devices.prune_below(t - p.device_retention_ms)
        payees.prune_below(t - p.payee_retention_ms)

        k = len(p.windows_ms)
        sums = [0] * k
        for score, member in src.items(oldest, t):
            amount = int(member.split(":", 1)[0])
            for i, w in enumerate(p.windows_ms):
                if score > t - w:
                    sums[i] += amount
        amounts = self._amounts.get(txn.source_account_id)
        if amounts is not None and amounts.expires_at <= t:
            amounts = None
        fix = self._fixes.get(txn.customer_id)
        if fix is not None and fix.expires_at <= t:
            fix = None

        history = History(
            source_counts=tuple(src.count(t - w, t) for w in p.windows_ms),
            source_amounts=tuple(sums),
            device_counts=tuple(dev.count(t - w, t) for w in p.windows_ms) if dev else (0,) * k,
            destination_counts=tuple(dst.count(t - w, t) for w in p.windows_ms),
            last_source_ms=src.last_at_or_before(t),
            device_seen=bool(txn.device_id) and txn.device_id in devices.scores,
            known_devices=len(devices.entries),
            payee_known=txn.destination_account_id in payees.scores,
            known_payees=len(payees.entries),
            recent_amounts=tuple(amounts.values) if amounts else (),
            last_fix=fix.fix if fix else None,
        )

        src.add(t, f"{txn.amount}:{txn.transaction_id}")
        src.cap(p.cap)
        src.expires_at = t + p.velocity_ttl_ms
        if dev is not None:
            dev.add(t, txn.transaction_id)
            dev.cap(p.cap)
            dev.expires_at = t + p.velocity_ttl_ms
            devices.add(t, txn.device_id, greater_only=True)
            devices.cap(p.cap)
            devices.expires_at = t + p.device_retention_ms
        dst.add(t, txn.transaction_id)
        dst.cap(p.cap)
        dst.expires_at = t + p.velocity_ttl_ms
        payees.add(t, txn.destination_account_id, greater_only=True)
        payees.cap(p.cap)
        payees.expires_at = t + p.payee_retention_ms
        values = [txn.amount, *(amounts.values if amounts else [])][: p.recent_amounts]
        self._amounts[txn.source_account_id] = _Amounts(values, t + p.amounts_ttl_ms)
        if txn.geo is not None and (fix is None or fix.fix.at_ms <= t):
            point = GeoPoint(txn.geo.latitude, txn.geo.longitude)
            self._fixes[txn.customer_id] = _Fix(GeoFix(point, t), t + p.geo_ttl_ms)
        self._markers[txn.transaction_id] = (history, t + p.marker_ttl_ms)
        return history
