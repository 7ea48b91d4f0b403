"""What one audit event says: who, what, which object, how it ended, where from.

Pure standard library, so domain code may build events (`origin.py` reads
who is asking from the RPC context). `occurred_at` is the service's clock in UTC; the database adds
the chain position and the hashes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SYSTEM = "system"  # work nobody asked for in person: sweepers, recovery loops


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked and where from.

    `actor` is the person (`user:<id>`) when an end user is known, else the
    calling service's SPIFFE id, else `system`. `source` is the request id,
    which the access log, traces and the caller's own logs share; `via` is the
    calling service when it acted for a person.
    """

    actor: str = SYSTEM
    source: str = ""
    via: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One row of the audit log, before the database numbers and hashes it.

    `action` is a dotted verb (`transfer.posted`, `payment.status_changed`,
    `login`); `subject` names the object acted on (an id); `details` is
    JSON-serialisable and never holds a secret or personal data.
    """

    action: str
    outcome: Outcome
    occurred_at: datetime
    actor: str
    subject: str = ""
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def by(
        cls,
        origin: Origin,
        action: str,
        outcome: Outcome,
        occurred_at: datetime,
        subject: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        details = dict(details or {})
        if origin.via:
            details.setdefault("via", origin.via)
        return cls(action, outcome, occurred_at, origin.actor, subject, origin.source, details)
