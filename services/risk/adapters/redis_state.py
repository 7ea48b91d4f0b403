"""Velocity and history state in Redis: one Lua script per transaction.

The script (below) does, atomically, what domain/history.py specifies: answer
a retried transaction from its marker, prune, read the snapshot, record the
transaction, set a TTL on every key it writes. Redis runs a script alone, so
100 concurrent scorings of one account see counts 0..99 and leave exactly 100
entries: no lost updates, no read-modify-write races, one round trip.

Keys (all under a configurable prefix, so tests and tenants never collide):

| key                      | type       | holds                                          |
|--------------------------|------------|------------------------------------------------|
| {p}v1:vs:{source}        | sorted set | "{amount}:{txn}" scored by time: source velocity |
| {p}v1:vd:{device}        | sorted set | txn ids by time: device velocity               |
| {p}v1:vt:{destination}   | sorted set | txn ids by time: fan-in velocity               |
| {p}v1:dv:{customer}      | sorted set | device ids by last use                         |
| {p}v1:py:{source}        | sorted set | destinations paid, by last payment             |
| {p}v1:am:{source}        | list       | recent amounts, newest first                   |
| {p}v1:geo:{customer}     | hash       | lat, lon, t of the last known position         |
| {p}v1:tx:{transaction}   | string     | the snapshot answered (idempotent retries)     |

The snapshot travels back as one comma-separated string of integers and
decimal strings (Lua numbers are doubles: a sum is formatted with %.0f rather
than returned as a number, which Redis would truncate; amounts stay exact up
to 2^53 minor units). The script names every key it touches in KEYS, but the
keys of one transaction do not share a hash slot: this is for a single Redis
(or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from services.risk.domain.history import StateParams
from services.risk.domain.model import GeoFix, GeoPoint, History, Transaction
from services.risk.service_layer.ports import StateUnavailable

SCRIPT = r"""
local t = tonumber(ARGV[1])
local t_arg = ARGV[1]
local member, txn, device, dest, amount, lat, lon =
    ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local k = tonumber(ARGV[9])
local lows = {}
for i = 1, k do lows[i] = tonumber(ARGV[9 + i]) end
local a = 10 + k
local oldest, vel_ttl = ARGV[a], ARGV[a + 1]
local dev_cut, dev_ttl = ARGV[a + 2], ARGV[a + 3]
local pay_cut, pay_ttl = ARGV[a + 4], ARGV[a + 5]
local n_amounts, amt_ttl = tonumber(ARGV[a + 6]), ARGV[a + 7]
local geo_ttl, marker_ttl, cap = ARGV[a + 8], ARGV[a + 9], tonumber(ARGV[a + 10])

local stored = redis.call('GET', KEYS[8])
if stored then return {1, stored} end

local function cap_set(key)
  local n = redis.call('ZCARD', key)
  if n > cap then redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1) end
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
if device ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. oldest) end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. dev_cut)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. pay_cut)

local out = {}
local last = redis.call('ZREVRANGEBYSCORE', KEYS[1], t_arg, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
out[#out + 1] = last[2] or ''

local counts, sums = {}, {}
for i = 1, k do counts[i] = 0; sums[i] = 0 end
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. oldest, t_arg, 'WITHSCORES')
for j = 1, #entries, 2 do
  local value = tonumber(string.match(entries[j], '^(%d+):'))
  local score = tonumber(entries[j + 1])
  for i = 1, k do
    if score > lows[i] then counts[i] = counts[i] + 1; sums[i] = sums[i] + value end
  end
end
for i = 1, k do out[#out + 1] = counts[i] end
for i = 1, k do out[#out + 1] = string.format('%.0f', sums[i]) end
for i = 1, k do
  if device ~= '' then
    out[#out + 1] = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[9 + i], t_arg)
  else
    out[#out + 1] = 0
  end
end
for i = 1, k do out[#out + 1] = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[9 + i], t_arg) end

local seen = 0
if device ~= '' and redis.call('ZSCORE', KEYS[4], device) then seen = 1 end
out[#out + 1] = seen
out[#out + 1] = redis.call('ZCARD', KEYS[4])
local known = 0
if redis.call('ZSCORE', KEYS[5], dest) then known = 1 end
out[#out + 1] = known
out[#out + 1] = redis.call('ZCARD', KEYS[5])

local amounts = redis.call('LRANGE', KEYS[6], 0, n_amounts - 1)
out[#out + 1] = #amounts
for _, v in ipairs(amounts) do out[#out + 1] = v end
local fix = redis.call('HMGET', KEYS[7], 'lat', 'lon', 't')
out[#out + 1] = fix[1] or ''
out[#out + 1] = fix[2] or ''
out[#out + 1] = fix[3] or ''
local payload = table.concat(out, ',')

redis.call('ZADD', KEYS[1], t_arg, member)
cap_set(KEYS[1])
redis.call('PEXPIRE', KEYS[1], vel_ttl)
if device ~= '' then
  redis.call('ZADD', KEYS[2], t_arg, txn)
  cap_set(KEYS[2])
  redis.call('PEXPIRE', KEYS[2], vel_ttl)
  redis.call('ZADD', KEYS[4], 'GT', t_arg, device)
  cap_set(KEYS[4])
  redis.call('PEXPIRE', KEYS[4], dev_ttl)
end
redis.call('ZADD', KEYS[3], t_arg, txn)
cap_set(KEYS[3])
redis.call('PEXPIRE', KEYS[3], vel_ttl)
redis.call('ZADD', KEYS[5], 'GT', t_arg, dest)
cap_set(KEYS[5])
redis.call('PEXPIRE', KEYS[5], pay_ttl)
redis.call('LPUSH', KEYS[6], amount)
redis.call('LTRIM', KEYS[6], 0, n_amounts - 1)
redis.call('PEXPIRE', KEYS[6], amt_ttl)
if lat ~= '' and (not fix[3] or tonumber(fix[3]) <= t) then
  redis.call('HSET', KEYS[7], 'lat', lat, 'lon', lon, 't', t_arg)
  redis.call('PEXPIRE', KEYS[7], geo_ttl)
end
redis.call('SET', KEYS[8], payload, 'PX', marker_ttl)
return {0, payload}
"""


class RedisState:
    """Snapshots and updates per transaction through the script above."""

    def __init__(self, client: redis.asyncio.Redis, params: StateParams, prefix: str) -> None:
        self._client = client
        self._params = params
        self.prefix = prefix
        self._script = client.register_script(SCRIPT)

    def keys(self, txn: Transaction) -> list[str]:
        p = f"{self.prefix}v1:"
        return [
            f"{p}vs:{txn.source_account_id}",
            f"{p}vd:{txn.device_id}",
            f"{p}vt:{txn.destination_account_id}",
            f"{p}dv:{txn.customer_id}",
            f"{p}py:{txn.source_account_id}",
            f"{p}am:{txn.source_account_id}",
            f"{p}geo:{txn.customer_id}",
            f"{p}tx:{txn.transaction_id}",
        ]

    def arguments(self, txn: Transaction) -> list[str]:
        p = self._params
        t = txn.occurred_ms
        geo = txn.geo
        return [
            str(t),
            f"{txn.amount}:{txn.transaction_id}",
            txn.transaction_id,
            txn.device_id,
            txn.destination_account_id,
            str(txn.amount),
            "" if geo is None else repr(geo.latitude),
            "" if geo is None else repr(geo.longitude),
            str(len(p.windows_ms)),
            *(str(t - w) for w in p.windows_ms),
            str(t - p.windows_ms[-1]),
            str(p.velocity_ttl_ms),
            str(t - p.device_retention_ms),
            str(p.device_retention_ms),
            str(t - p.payee_retention_ms),
            str(p.payee_retention_ms),
            str(p.recent_amounts),
            str(p.amounts_ttl_ms),
            str(p.geo_ttl_ms),
            str(p.marker_ttl_ms),
            str(p.cap),
        ]

    async def observe(self, txn: Transaction) -> History:
        """Snapshot before `txn` and record it; raises StateUnavailable on any Redis failure."""
        try:
            result: Any = await self._script(keys=self.keys(txn), args=self.arguments(txn))
        except (redis.RedisError, OSError) as exc:
            raise StateUnavailable(str(exc)) from exc
        payload = result[1]
        if isinstance(payload, bytes):
            payload = payload.decode()
        return parse_snapshot(str(payload), len(self._params.windows_ms))

    async def ping(self) -> bool:
        try:
            pong: Any = self._client.ping()  # typed as sync-or-async; this client is async
            return bool(await pong)
        except (redis.RedisError, OSError):
            return False


def parse_snapshot(payload: str, k: int) -> History:
    fields = payload.split(",")
    pos = 0

    def take(n: int = 1) -> list[str]:
        nonlocal pos
        values = fields[pos : pos + n]
        pos += n
        return values

    (last,) = take()
    counts = tuple(int(v) for v in take(k))
    sums = tuple(int(v) for v in take(k))
    device_counts = tuple(int(v) for v in take(k))
    destination_counts = tuple(int(v) for v in take(k))
    seen, known_devices, known, known_payees, n_amounts = (int(v) for v in take(5))
    amounts = tuple(int(v) for v in take(n_amounts))
    lat, lon, at = take(3)
    return History(
        source_counts=counts,
        source_amounts=sums,
        device_counts=device_counts,
        destination_counts=destination_counts,
        last_source_ms=int(float(last)) if last else None,
        device_seen=seen == 1,
        known_devices=known_devices,
        payee_known=known == 1,
        known_payees=known_payees,
        recent_amounts=amounts,
        last_fix=GeoFix(GeoPoint(float(lat), float(lon)), int(at)) if at else None,
    )
