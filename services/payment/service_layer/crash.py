"""A test hook that kills the process at a named step, to prove crash recovery.

With `BANKMESH_PAYMENT_CRASH_AT=<step>` in its environment the payment
service sends itself SIGKILL when it reaches that step: no cleanup, no
rollback, no goodbye, as in a power cut. The recovery tests start the
service this way, watch it die, restart it without the variable and check
that the payment still ends in exactly one final state with money moved at
most once. Unset (always, outside those tests), the hook does nothing.

Steps, in the order a payment reaches them:

| step                    | where                                                      |
|-------------------------|------------------------------------------------------------|
| after_risk              | risk answered; nothing is stored yet (the retry redoes it) |
| after_persist           | the PENDING payment, its route and its key are committed   |
| after_transfer          | the ledger accepted the transfer or hold; not yet recorded |
| after_review_decision   | a reviewer's decision is committed; hold not yet posted    |
| after_refund_persist    | a PENDING refund is committed; no money returned yet       |
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("bankmesh.payment")

CRASH_STEPS = frozenset(
    {
        "after_risk",
        "after_persist",
        "after_transfer",
        "after_review_decision",
        "after_refund_persist",
    }
)

CrashHook = Callable[[str], None]


def never(step: str) -> None:
    """The hook outside crash tests."""


def crash_at(step_name: str) -> CrashHook:
    """A hook that kills this process at `step_name`; inert for an empty name."""
    if not step_name:
        return never
    if step_name not in CRASH_STEPS:
        raise ValueError(
            f"BANKMESH_PAYMENT_CRASH_AT={step_name!r} names no step; "
            f"choose one of {', '.join(sorted(CRASH_STEPS))}"
        )

    def crash(step: str) -> None:
        if step == step_name:
            log.warning("crash hook: killing the process at %s", step)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    return crash
