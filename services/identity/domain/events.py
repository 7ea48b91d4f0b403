"""Security events: who did what, when (UTC), from where, and how it ended.

They are written in the same transaction as the change they describe (a
sign-in that failed writes its event even though it changes nothing else),
to the append-only `security_events` table. They never carry a password, a
token or personal data: a person is named by their user id, and an email
nobody signs in with by its blind index (a keyed hash).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

# The audit log's outcomes: every security event also goes into its chain.
from services.common.audit.events import Outcome

__all__ = ["EventKind", "Outcome", "SecurityEvent"]


class EventKind(enum.StrEnum):
    SIGN_IN = "sign_in"
    ACCOUNT_LOCKED = "account_locked"
    REFRESH = "refresh"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - an event name, not a secret
    LOGOUT = "logout"
    CUSTOMER_CREATED = "customer_created"
    STAFF_USER_CREATED = "staff_user_created"
    ROLE_ASSIGNED = "role_assigned"
    ROLE_REVOKED = "role_revoked"
    SESSIONS_ENDED = "sessions_ended"
    PERSONAL_DATA_REWRAPPED = "personal_data_rewrapped"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    kind: EventKind
    outcome: Outcome
    occurred_at: datetime
    # Who acted: a user id, "service:<name>", or "" when nobody could be named.
    actor: str
    # Whose account it concerns, when known.
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    client_ip: str = ""
    request_id: str = ""
    details: dict[str, str] = field(default_factory=dict)
