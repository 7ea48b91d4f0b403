"""The risk service's values: a transaction to score, what we remember about its
parties, and the decision we reach.

Amounts are integers of minor units, as everywhere in bankmesh; scores and
coordinates are floats because they are not money.

`History` is what the state store knew *before* this transaction: the
velocity counts exclude it, so the same snapshot can be recomputed for a
retry. Features (features.py) add the transaction itself.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class Decision(enum.StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DECLINE = "DECLINE"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Decision.APPROVE: 0, Decision.REVIEW: 1, Decision.DECLINE: 2}


def most_severe(*decisions: Decision) -> Decision:
    return max(decisions, key=lambda d: d.severity)


@dataclass(frozen=True, slots=True)
class GeoPoint:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class GeoFix:
    """Where a customer was at a moment (epoch milliseconds)."""

    point: GeoPoint
    at_ms: int


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: str
    customer_id: str
    source_account_id: str
    destination_account_id: str
    amount: int  # minor units, positive
    currency: str
    occurred_at: datetime  # timezone-aware
    channel: str = "UNSPECIFIED"
    device_id: str = ""
    ip_address: str = ""
    geo: GeoPoint | None = None
    # False when the request had no occur_time and the service's clock filled it
    # in: a retry then arrives at another instant but is still the same request.
    occurred_at_given: bool = True

    @property
    def occurred_ms(self) -> int:
        return epoch_ms(self.occurred_at)

    def canonical(self) -> dict[str, Any]:
        """Every input that can change a decision, as JSON-ready values in a fixed shape."""
        return {
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "source_account_id": self.source_account_id,
            "destination_account_id": self.destination_account_id,
            "amount": self.amount,
            "currency": self.currency,
            "occurred_ms": self.occurred_ms,
            "occurred_at_given": self.occurred_at_given,
            "channel": self.channel,
            "device_id": self.device_id,
            "ip_address": self.ip_address,
            "geo": None if self.geo is None else [self.geo.latitude, self.geo.longitude],
        }

    def inputs_hash(self) -> str:
        """SHA-256 of the canonical inputs: a retry must hash the same, a different request not."""
        inputs = self.canonical()
        if not self.occurred_at_given:
            inputs["occurred_ms"] = None
        text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def from_canonical(data: dict[str, Any]) -> Transaction:
        geo = data.get("geo")
        return Transaction(
            transaction_id=data["transaction_id"],
            customer_id=data["customer_id"],
            source_account_id=data["source_account_id"],
            destination_account_id=data["destination_account_id"],
            amount=int(data["amount"]),
            currency=data["currency"],
            occurred_at=from_epoch_ms(int(data["occurred_ms"])),
            channel=data["channel"],
            device_id=data["device_id"],
            ip_address=data["ip_address"],
            geo=None if geo is None else GeoPoint(float(geo[0]), float(geo[1])),
            occurred_at_given=bool(data.get("occurred_at_given", True)),
        )


def epoch_ms(moment: datetime) -> int:
    # Integer arithmetic on the timedelta: float seconds would round some instants.
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class History:
    """What the state store knew before this transaction (see the module docstring).

    The velocity tuples have one entry per window of the ruleset, shortest first.
    """

    source_counts: tuple[int, ...]
    source_amounts: tuple[int, ...]  # minor units
    device_counts: tuple[int, ...]
    destination_counts: tuple[int, ...]
    last_source_ms: int | None  # the source account's previous transaction
    device_seen: bool
    known_devices: int
    payee_known: bool
    known_payees: int
    recent_amounts: tuple[int, ...]  # the source account's, most recent first
    last_fix: GeoFix | None  # the customer's last known position

    @staticmethod
    def empty(windows: int) -> History:
        zeros = (0,) * windows
        return History(zeros, zeros, zeros, zeros, None, False, 0, False, 0, (), None)


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that fired: its stable reason code, its score weight and any forced decision."""

    code: str
    weight: float
    force: Decision | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Assessment:
    """The outcome of scoring, before it is stored."""

    score: float
    decision: Decision
    reason_codes: tuple[str, ...]
    rules_score: float
    model_score: float
    hits: tuple[RuleHit, ...]


@dataclass(frozen=True, slots=True)
class StoredDecision:
    decision_id: str
    transaction_id: str
    inputs_hash: str
    inputs: dict[str, Any]
    features: dict[str, float]
    score: float
    rules_score: float
    model_score: float
    decision: Decision
    reason_codes: tuple[str, ...]
    ruleset_version: str
    model_version: str
    fallback: bool
    created_at: datetime
