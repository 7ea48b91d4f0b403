"""Why the risk service refuses a request.

A refusal is never a fraud verdict (that is a DECLINE decision, a normal
answer): it is a request the service cannot score as given. Reasons are named
as in the `bankmesh.common.v1.ErrorReason` enum, without its prefix.

    RiskError                        (carries a Reason and, optionally, a field)
     ├── InvalidRequest              INVALID_ARGUMENT, INVALID_ID, INVALID_AMOUNT, ...
     ├── DecisionConflict            EXISTS_WITH_DIFFERENT_FIELDS: a transaction id
     │                               was scored before with other inputs
     └── DecisionNotFound            replay of an unknown decision id (INVALID_ID)
"""

from __future__ import annotations

import enum

from services.common.errors import ServiceError


class Reason(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_ID = "INVALID_ID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    ACCOUNTS_MUST_BE_DIFFERENT = "ACCOUNTS_MUST_BE_DIFFERENT"
    EXISTS_WITH_DIFFERENT_FIELDS = "EXISTS_WITH_DIFFERENT_FIELDS"


class RiskError(ServiceError[Reason]):
    reason = Reason.INVALID_ARGUMENT


class InvalidRequest(RiskError):
    reason = Reason.INVALID_ARGUMENT


class DecisionConflict(RiskError):
    reason = Reason.EXISTS_WITH_DIFFERENT_FIELDS


class DecisionNotFound(RiskError):
    """ErrorReason has no DECISION_NOT_FOUND; INVALID_ID sent as NOT_FOUND says the id names nothing."""

    reason = Reason.INVALID_ID
