"""How long the current call may still take, for every outbound call and wait it makes.

The servicer records the incoming call's deadline (`within`); the ports and
the idempotency wait ask `budget(default)` how long they may take: the time
the caller has left minus a margin (to answer before the caller gives up),
or `default` when nobody is waiting on a deadline (no deadline on the
incoming call, or the recovery loop). A budget of zero or less means "do
not even start": the caller would never see the answer.

A ContextVar, like `mesh.context`: each RPC runs in its own task and sees
only its own deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Time kept back to write the outcome and send the response.
MARGIN_SECONDS = 0.1
DEFAULT_CALL_SECONDS = 2.0

# Some gRPC builds report "no deadline" as an enormous remaining time, not None.
NO_DEADLINE_BEYOND_SECONDS = 24 * 3600.0

_deadline: ContextVar[float | None] = ContextVar("payment_call_deadline", default=None)


@contextmanager
def within(time_remaining: float | None) -> Iterator[None]:
    """Run the block with the caller's remaining time (None: no deadline)."""
    if time_remaining is not None and time_remaining > NO_DEADLINE_BEYOND_SECONDS:
        time_remaining = None
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def budget(default: float = DEFAULT_CALL_SECONDS) -> float:
    left = remaining()
    if left is None:
        return default
    return left - MARGIN_SECONDS
