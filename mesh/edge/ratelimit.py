"""Per-client rate limits in Redis: GCRA (a token bucket kept as one timestamp), atomic in Lua.

A `Limit` of N per P seconds lets a client make N requests at once and then
one every P/N seconds. Redis keeps, per key, the "theoretical arrival time"
(TAT) of the next request; one Lua script reads it, decides and writes it back
in a single step, using Redis's own clock, so every edge replica shares one
limit and no race lets two requests take the last slot.

What is limited, and by what (`RULES`):

| route                | key            | default     |
|----------------------|----------------|-------------|
| POST /v1/auth/login   | client IP     | 10 per 60 s |
| POST /v1/auth/refresh | client IP     | 30 per 60 s |
| POST /v1/payments     | user id       | 30 per 60 s |

A refusal is 429 with `Retry-After` (whole seconds) and the Status
RESOURCE_EXHAUSTED / RATE_LIMITED.

When Redis does not answer (down, or slower than `timeout`), each edge
process falls back to the same algorithm in its own memory. Limits then hold
per process rather than for the whole fleet (N replicas allow up to N times
the limit), which keeps login brute force and payment floods bounded without
turning a Redis outage into a login outage. The switch is logged once per
outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("bankmesh.edge.ratelimit")

KEY_PREFIX = "bankmesh:edge:rate:"

# KEYS[1]: the bucket. ARGV: emission interval (ms), burst tolerance (ms).
# Returns {allowed (1/0), milliseconds until a retry can succeed}.
_GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance - interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """`count` requests per `period` seconds, all of them at once if need be."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= 0:
            raise ValueError("a limit is a positive count per a positive period")

    @classmethod
    def parse(cls, text: str) -> Limit:
        """'10/60' is 10 requests per 60 seconds."""
        count, _, period = text.partition("/")
        try:
            return cls(int(count), float(period or "60"))
        except ValueError:
            raise ValueError(f"{text!r} is not a limit like 10/60 (count/seconds)") from None

    @property
    def interval_ms(self) -> int:
        return max(1, round(self.period * 1000 / self.count))

    @property
    def tolerance_ms(self) -> int:
        return self.interval_ms * (self.count - 1)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused


class LocalLimiter:
    """The same GCRA in this process's memory: the fallback while Redis is away."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys

    def hit(self, key: str, limit: Limit) -> Decision:
        now = self._clock() * 1000
        tat = max(self._tat.get(key, now), now)
        # allow_at = new_tat - tolerance - interval, written without the round
        # trip through new_tat: in floats that can land a hair above `now` and
        # refuse a client's very first request.
        allow_at = tat - limit.tolerance_ms
        new_tat = tat + limit.interval_ms
        if now < allow_at:
            return Decision(False, _seconds(allow_at - now))
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        while len(self._tat) > self._max_keys:
            self._tat.popitem(last=False)  # forget the least recently seen client
        return Decision(True)


class RateLimiter:
    def __init__(
        self,
        redis_client: Any | None,
        *,
        timeout: float = 0.25,
        fallback: LocalLimiter | None = None,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        self._redis = redis_client
        self._prefix = key_prefix
        self._script = redis_client.register_script(_GCRA) if redis_client is not None else None
        self._timeout = timeout
        self._fallback = fallback or LocalLimiter()
        self._degraded = False

    async def hit(self, rule: str, subject: str, limit: Limit) -> Decision:
        key = f"{self._prefix}{rule}:{subject}"
        if self._script is None:
            return self._fallback.hit(key, limit)
        try:
            async with asyncio.timeout(self._timeout):
                allowed, wait_ms = await self._script(
                    keys=[key], args=[limit.interval_ms, limit.tolerance_ms]
                )
        except Exception as exc:  # any Redis failure: limit locally instead
            if not self._degraded:
                log.warning("rate limits fall back to this process: Redis %s", type(exc).__name__)
                self._degraded = True
            return self._fallback.hit(key, limit)
        if self._degraded:
            log.info("rate limits are shared in Redis again")
            self._degraded = False
        return Decision(bool(allowed), 0 if allowed else _seconds(int(wait_ms)))


def _seconds(ms: float) -> int:
    return max(1, math.ceil(ms / 1000))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    by: str  # "ip" or "user"
    limit: Limit


DEFAULT_RULES: Mapping[str, Rule] = {
    "/bankmesh.identity.v1.IdentityService/Login": Rule("login", "ip", Limit(10, 60)),
    "/bankmesh.identity.v1.IdentityService/RefreshToken": Rule("refresh", "ip", Limit(30, 60)),
    "/bankmesh.payment.v1.PaymentService/CreatePayment": Rule(
        "create-payment", "user", Limit(30, 60)
    ),
}


def rules_from_env(env: Mapping[str, str]) -> dict[str, Rule]:
    """DEFAULT_RULES with BANKMESH_EDGE_RATE_<LOGIN|REFRESH|CREATE_PAYMENT>=count/seconds."""
    rules = dict(DEFAULT_RULES)
    for method, rule in DEFAULT_RULES.items():
        variable = "BANKMESH_EDGE_RATE_" + rule.name.upper().replace("-", "_")
        if env.get(variable):
            rules[method] = Rule(rule.name, rule.by, Limit.parse(env[variable]))
    return rules
