"""Crafted transactions and histories for the risk unit tests.

`quiet_history()` describes an established customer on whom no rule fires: a
known device and payee, a steady history of amounts around 50, a last
position nearby an hour ago. Each test changes one thing and expects one
reason code.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.risk.adapters.ruleset_file import RiskConfig, load_ruleset
from services.risk.domain.model import GeoFix, GeoPoint, History, Transaction, epoch_ms

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
PARIS = GeoPoint(48.8566, 2.3522)
BERLIN = GeoPoint(52.52, 13.405)

_CONFIG: RiskConfig | None = None


def config() -> RiskConfig:
    """The default ruleset and model, loaded once (loading verifies the model's hash)."""
    global _CONFIG
    if _CONFIG is None:
        _CONFIG = load_ruleset()
    return _CONFIG


def txn(**changes: Any) -> Transaction:
    base = Transaction(
        transaction_id="t-1",
        customer_id="alice",
        source_account_id="acc-alice",
        destination_account_id="acc-bob",
        amount=50_00,
        currency="EUR",
        occurred_at=NOW,
        channel="MOBILE",
        device_id="phone-1",
        geo=PARIS,
    )
    return replace(base, **changes)


def quiet_history(**changes: Any) -> History:
    base = History(
        source_counts=(0, 1, 3),
        source_amounts=(0, 40_00, 150_00),
        device_counts=(0, 1, 3),
        destination_counts=(0, 0, 1),
        last_source_ms=epoch_ms(NOW - timedelta(hours=1)),
        device_seen=True,
        known_devices=1,
        payee_known=True,
        known_payees=4,
        recent_amounts=(45_00, 60_00, 38_00, 52_00, 49_00, 55_00, 41_00, 58_00),
        last_fix=GeoFix(PARIS, epoch_ms(NOW - timedelta(hours=1))),
    )
    return replace(base, **changes)
