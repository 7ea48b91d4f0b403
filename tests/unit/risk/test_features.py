"""Feature code: what each feature means, and that the state's semantics hold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.risk.domain.features import (
    SPEED_CAP_KMH,
    STATELESS_FEATURES,
    compute_features,
    feature_names,
    haversine_km,
    major_units,
    percentile,
    stateless_features,
)
from services.risk.domain.history import InMemoryState, StateParams
from services.risk.domain.model import GeoFix, Transaction, epoch_ms

from .support import BERLIN, NOW, PARIS, config, quiet_history, txn

WINDOWS = (60, 3600, 86400)


def test_feature_names_cover_exactly_the_computed_features() -> None:
    """Every computed feature is named once by feature_names(), which fixes the model's order."""
    features = compute_features(txn(), quiet_history(), WINDOWS)
    names = feature_names(WINDOWS)
    assert len(set(names)) == len(names)
    assert sorted(features) == sorted(names)
    assert set(STATELESS_FEATURES) <= set(features)


def test_velocity_features_count_the_transaction_being_scored() -> None:
    """Three earlier transactions in a day make a count of four and add this amount."""
    f = compute_features(txn(amount=10_00), quiet_history(), WINDOWS)
    assert f["src_count_86400s"] == 4
    assert f["src_amount_86400s"] == 160.0
    assert f["dst_count_60s"] == 1


def test_without_a_device_device_features_stay_zero() -> None:
    """No device id: no device velocity and no 'seen' device."""
    f = compute_features(txn(device_id=""), quiet_history(), WINDOWS)
    assert (f["has_device"], f["device_seen"], f["dev_count_3600s"]) == (0.0, 0.0, 0.0)


def test_amounts_are_major_units_of_their_currency() -> None:
    """1050 minor units are 10.50 EUR but 1050 JPY and 1.05 KWD."""
    assert major_units(1050, "EUR") == 10.5
    assert major_units(1050, "JPY") == 1050.0
    assert major_units(1050, "KWD") == 1.05


def test_percentiles_are_nearest_rank() -> None:
    """p95 of 1..20 is 19; p50 is 10; no values give 0."""
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 95) == 19.0
    assert percentile(values, 50) == 10.0
    assert percentile([], 95) == 0.0


def test_paris_to_berlin_is_about_880_km() -> None:
    """Great-circle distance, within a kilometre of the published figure."""
    assert haversine_km(PARIS, BERLIN) == pytest.approx(878, abs=1)


def test_two_places_at_the_same_instant_cap_the_speed() -> None:
    """Zero elapsed time and a real distance gives the cap, not infinity."""
    h = quiet_history(last_fix=GeoFix(BERLIN, epoch_ms(NOW)))
    f = compute_features(txn(), h, WINDOWS)
    assert f["geo_speed_kmh"] == SPEED_CAP_KMH


def test_stateless_features_need_only_the_transaction() -> None:
    """The fallback's features are those of the full set, computed the same way."""
    t = txn()
    full = compute_features(t, quiet_history(), WINDOWS)
    assert stateless_features(t) == {name: full[name] for name in STATELESS_FEATURES}


def memory() -> InMemoryState:
    return InMemoryState(StateParams.from_settings(config().ruleset.state))


def at(minutes: float, **changes: object) -> Transaction:
    return txn(
        transaction_id=f"t-{minutes}",
        occurred_at=NOW + timedelta(minutes=minutes),
        **changes,
    )


def test_windows_are_half_open_so_an_entry_exactly_a_minute_old_has_left() -> None:
    """(t - 60 s, t]: a transaction 60 s earlier is outside the one-minute window."""
    state = memory()
    state.observe(at(0))
    h = state.observe(at(1))
    assert h.source_counts == (0, 1, 1)
    assert h.source_amounts == (0, 50_00, 50_00)


def test_a_retry_gets_the_snapshot_of_its_first_attempt_and_changes_nothing() -> None:
    """Observing one transaction id twice answers the same and counts it once."""
    state = memory()
    state.observe(at(0))
    first = state.observe(at(0.5))
    assert state.observe(at(0.5)) == first
    assert state.observe(at(0.7)).source_counts == (2, 2, 2)


def test_devices_and_payees_are_remembered_per_customer_and_source() -> None:
    """After one payment the device is seen and the payee known; another device is not."""
    state = memory()
    assert not state.observe(at(0)).device_seen
    h = state.observe(at(1, device_id="phone-2"))
    assert (h.device_seen, h.known_devices, h.payee_known, h.known_payees) == (False, 1, True, 1)


def test_a_late_transaction_does_not_move_the_last_position_back() -> None:
    """The last fix only moves forward in time."""
    state = memory()
    state.observe(at(10, geo=BERLIN))
    state.observe(at(5, geo=PARIS))
    assert state.observe(at(11)).last_fix == GeoFix(BERLIN, epoch_ms(NOW + timedelta(minutes=10)))


def test_velocity_state_expires_after_its_ttl() -> None:
    """A day and a minute after the last write, the account's velocity state is gone."""
    state = memory()
    state.observe(at(0))
    h = state.observe(at(24 * 60 + 2))
    assert h.source_counts == (0, 0, 0)
    assert h.last_source_ms is None
    assert h.recent_amounts == (50_00,)  # amounts live as long as payees
