"""What the clients saw, as the checker and the report read it.

Times are seconds since the run's workload started (``History.now``), one
clock for requests, faults and the timeline.

* ``Intent``: one payment a client wanted to make, with the idempotency key it
  chose before the first try and kept for every retry. ``payment_id`` and
  ``status`` are the first answer (the acknowledgement); ``replays`` the
  answers to deliberate resends of the same key after that.
* ``Attempt``: one request on the wire (a payment try or a balance read),
  with its outcome: ``OK`` or the error's name (a gRPC code, ``HTTP_503``,
  ``TIMEOUT``, ...). Availability and the timeline count these.
* ``Violation``: an invariant the checker or a reader found broken.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Intent:
    key: str
    channel: str  # "grpc" or "rest": also the idempotency scope (operator or customer)
    source: str
    destination: str
    amount: int
    created: float
    payment_id: str | None = None
    status: str | None = None
    acknowledged_at: float | None = None
    attempts: int = 0
    last_error: str = ""
    refused: str = ""  # a definitive refusal (4xx, INVALID_ARGUMENT, ...): never acknowledged
    replays: list[tuple[str, str]] = field(default_factory=list)
    resolved_late: bool = False  # acknowledged only by the retry after the faults


@dataclass(frozen=True)
class Attempt:
    at: float
    what: str  # "pay" or "read"
    channel: str
    outcome: str  # "OK" or the error's name
    latency: float

    @property
    def ok(self) -> bool:
        return self.outcome == "OK"


@dataclass(frozen=True)
class Violation:
    kind: str
    at: float
    detail: str


@dataclass
class History:
    started: float = field(default_factory=time.monotonic)
    intents: list[Intent] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    reads_checked: int = 0

    def now(self) -> float:
        return time.monotonic() - self.started

    def attempt(self, what: str, channel: str, outcome: str, began: float) -> None:
        now = self.now()
        self.attempts.append(Attempt(now, what, channel, outcome, now - began))

    def violate(self, kind: str, detail: str) -> None:
        self.violations.append(Violation(kind, self.now(), detail))

    def violations_by_kind(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)
