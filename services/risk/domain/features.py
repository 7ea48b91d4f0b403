"""Features: the numbers both the rules and the model look at.

One function, `compute_features(transaction, history, windows)`, turns a
transaction and the `History` the state store returned into a flat
name -> float mapping. Serving calls it with the snapshot Redis returned;
training (training.py) calls the very same function with snapshots from
`InMemoryState`, which mirrors the Redis script's semantics (a test feeds
both the same stream and compares). So there is one code path from history to
feature values, and no train/serve skew to creep in.

The stored decision keeps these features: the rules and the model read
nothing else (plus the ids the deny list checks), so a decision can be
recomputed from its row (`replay`).

Conventions:
* amounts are major units (EUR 10.50 -> 10.5) so that JPY and EUR amounts
  of the same currency exponent mean the same to the thresholds;
* velocity counts and sums *include* the transaction being scored;
* every value is finite (JSON has no infinity): unbounded quantities are capped;
* `stateless_features` is the subset computable without any state; the
  fallback model is trained on exactly those.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from services.common.money import MINOR_UNIT_EXPONENTS

from .model import GeoPoint, History, Transaction

NO_PREVIOUS_SECONDS = 30.0 * 86_400  # "no previous transaction" reads as a month of quiet
SPEED_CAP_KMH = 20_000.0
RATIO_CAP = 1_000.0
EARTH_RADIUS_KM = 6371.0088

CHANNELS = {"UNSPECIFIED": 0.0, "MOBILE": 1.0, "WEB": 2.0, "BRANCH": 3.0, "API": 4.0}

STATELESS_FEATURES: tuple[str, ...] = (
    "amount",
    "amount_log10",
    "round_amount",
    "hour_of_day",
    "channel",
    "has_device",
    "has_geo",
)


def feature_names(windows: Sequence[int]) -> tuple[str, ...]:
    """Every feature, in the order the model's input vector uses."""
    per_window = [
        f"{prefix}_{w}s"
        for prefix in ("src_count", "src_amount", "dev_count", "dst_count")
        for w in windows
    ]
    return (
        *STATELESS_FEATURES,
        *per_window,
        "seconds_since_last",
        "device_seen",
        "known_devices",
        "payee_known",
        "known_payees",
        "history_size",
        "amount_median",
        "amount_p95",
        "amount_to_median",
        "amount_to_p95",
        "geo_km",
        "geo_speed_kmh",
    )


def major_units(minor: int, currency: str) -> float:
    exponent: int = MINOR_UNIT_EXPONENTS.get(currency, 2)
    return minor / 10.0**exponent


def stateless_features(txn: Transaction) -> dict[str, float]:
    amount = major_units(txn.amount, txn.currency)
    return {
        "amount": amount,
        "amount_log10": math.log10(1.0 + amount),
        "round_amount": 1.0 if amount % 10 == 0 else 0.0,
        "hour_of_day": float(txn.occurred_at.hour),
        "channel": CHANNELS.get(txn.channel, 0.0),
        "has_device": 1.0 if txn.device_id else 0.0,
        "has_geo": 1.0 if txn.geo is not None else 0.0,
    }


def compute_features(
    txn: Transaction, history: History, windows: Sequence[int]
) -> dict[str, float]:
    features = stateless_features(txn)
    amount = features["amount"]
    has_device = bool(txn.device_id)
    for i, w in enumerate(windows):
        features[f"src_count_{w}s"] = float(history.source_counts[i] + 1)
        features[f"src_amount_{w}s"] = major_units(history.source_amounts[i], txn.currency) + amount
        features[f"dev_count_{w}s"] = float(history.device_counts[i] + 1) if has_device else 0.0
        features[f"dst_count_{w}s"] = float(history.destination_counts[i] + 1)

    if history.last_source_ms is None:
        since = NO_PREVIOUS_SECONDS
    else:
        since = min(abs(txn.occurred_ms - history.last_source_ms) / 1000.0, NO_PREVIOUS_SECONDS)
    features["seconds_since_last"] = since

    features["device_seen"] = 1.0 if has_device and history.device_seen else 0.0
    features["known_devices"] = float(history.known_devices)
    features["payee_known"] = 1.0 if history.payee_known else 0.0
    features["known_payees"] = float(history.known_payees)

    recent = sorted(major_units(a, txn.currency) for a in history.recent_amounts)
    median = percentile(recent, 50)
    p95 = percentile(recent, 95)
    features["history_size"] = float(len(recent))
    features["amount_median"] = median
    features["amount_p95"] = p95
    features["amount_to_median"] = min(amount / median, RATIO_CAP) if median > 0 else 0.0
    features["amount_to_p95"] = min(amount / p95, RATIO_CAP) if p95 > 0 else 0.0

    km, speed = 0.0, 0.0
    if txn.geo is not None and history.last_fix is not None:
        km = haversine_km(history.last_fix.point, txn.geo)
        hours = abs(txn.occurred_ms - history.last_fix.at_ms) / 3_600_000
        if hours > 0:
            speed = min(km / hours, SPEED_CAP_KMH)
        elif km > 0:
            speed = SPEED_CAP_KMH  # two places at the same instant
    features["geo_km"] = km
    features["geo_speed_kmh"] = speed
    return features


def percentile(sorted_values: Sequence[float], pct: int) -> float:
    """Nearest-rank percentile (no interpolation: stable and exact); 0 for no values."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def vector(features: Mapping[str, float], names: Sequence[str]) -> list[float]:
    return [features[name] for name in names]
