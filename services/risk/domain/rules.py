"""The rules, and how their verdicts and the model's combine into one decision.

Every rule reads only the features (features.py) and, for the deny list, the
transaction's ids; so a stored decision can be recomputed from its row. Each
rule that fires yields a `RuleHit` with a stable reason code:

| code                  | fires when                                                        |
|-----------------------|-------------------------------------------------------------------|
| VELOCITY_COUNT        | the source account's transaction count in a window exceeds its limit |
| VELOCITY_AMOUNT       | the source account's amount sum in a window exceeds its limit      |
| DEVICE_VELOCITY       | the device's transaction count in a window exceeds its limit       |
| DESTINATION_VELOCITY  | payments into the destination in a window exceed the limit (fan-in) |
| NEW_DEVICE            | a device the customer never used, for a customer who has used one  |
| NEW_PAYEE             | a destination the source never paid, for a source that paid others |
| AMOUNT_ANOMALY        | amount > factor x p95 of the source's recent amounts (min history) |
| IMPOSSIBLE_TRAVEL     | the customer moved faster than max_speed_kmh since the last fix    |
| DENY_LIST             | source, destination or device is on the ruleset's deny list        |
| ML_SCORE              | the model's probability reaches model.reason_threshold             |
| FALLBACK_AMOUNT_LIMIT | in fallback only: the amount exceeds fallback.review_above         |

"New" needs a baseline: a customer's very first device or a source's very
first payee is an enrolment, not a deviation, so NEW_DEVICE and NEW_PAYEE stay
quiet until there is something to deviate from.

Combining (`combine`):

    rules_score = 1 - prod(1 - weight_i)            over the rules that fired
    score       = 1 - (1 - rules_score) * (1 - model_weight * model_score)

a noisy-OR: each piece of evidence raises the score, none can lower it, the
order does not matter and the result stays in [0, 1]. The decision is DECLINE
at or above the decline threshold if the rules corroborate it (rules_score
reaches thresholds.decline_min_rules_score; otherwise REVIEW: the model alone
never declines), REVIEW at or above the review threshold, APPROVE below; then
any decision a fired rule forces (DENY_LIST: DECLINE, IMPOSSIBLE_TRAVEL:
REVIEW in the default ruleset) wins if it is more severe. A forced decision
never lowers the outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from .ensemble import TreeEnsemble
from .features import STATELESS_FEATURES, vector
from .model import Assessment, Decision, RuleHit, Transaction, most_severe
from .ruleset import RuleEffect, Ruleset, VelocityRule


class ReasonCode(enum.StrEnum):
    VELOCITY_COUNT = "VELOCITY_COUNT"
    VELOCITY_AMOUNT = "VELOCITY_AMOUNT"
    DEVICE_VELOCITY = "DEVICE_VELOCITY"
    DESTINATION_VELOCITY = "DESTINATION_VELOCITY"
    NEW_DEVICE = "NEW_DEVICE"
    NEW_PAYEE = "NEW_PAYEE"
    AMOUNT_ANOMALY = "AMOUNT_ANOMALY"
    IMPOSSIBLE_TRAVEL = "IMPOSSIBLE_TRAVEL"
    DENY_LIST = "DENY_LIST"
    ML_SCORE = "ML_SCORE"
    FALLBACK_AMOUNT_LIMIT = "FALLBACK_AMOUNT_LIMIT"


def _hit(code: ReasonCode, effect: RuleEffect, detail: str) -> RuleHit:
    return RuleHit(code.value, effect.weight, effect.force, detail)


def _velocity(
    code: ReasonCode,
    rule: VelocityRule,
    features: Mapping[str, float],
    prefix: str,
    windows: Sequence[int],
) -> list[RuleHit]:
    over = [
        f"{features[f'{prefix}_{w}s']:g} > {limit:g} in {w}s"
        for w, limit in zip(windows, rule.limits, strict=True)
        if features[f"{prefix}_{w}s"] > limit
    ]
    return [_hit(code, rule.effect, "; ".join(over))] if over else []


def deny_list_hits(txn: Transaction, ruleset: Ruleset) -> list[RuleHit]:
    deny = ruleset.deny_list
    listed = [
        f"{what} {value}"
        for what, value, names in (
            ("source", txn.source_account_id, deny.accounts),
            ("destination", txn.destination_account_id, deny.accounts),
            ("device", txn.device_id, deny.devices),
        )
        if value and value in names
    ]
    return [_hit(ReasonCode.DENY_LIST, deny.effect, ", ".join(listed))] if listed else []


def evaluate_rules(
    txn: Transaction, features: Mapping[str, float], ruleset: Ruleset
) -> list[RuleHit]:
    """Every rule on the full features, in the order of the table above."""
    windows = ruleset.state.windows_seconds
    hits = [
        *_velocity(
            ReasonCode.VELOCITY_COUNT, ruleset.velocity_count, features, "src_count", windows
        ),
        *_velocity(
            ReasonCode.VELOCITY_AMOUNT, ruleset.velocity_amount, features, "src_amount", windows
        ),
        *_velocity(
            ReasonCode.DEVICE_VELOCITY, ruleset.device_velocity, features, "dev_count", windows
        ),
        *_velocity(
            ReasonCode.DESTINATION_VELOCITY,
            ruleset.destination_velocity,
            features,
            "dst_count",
            windows,
        ),
    ]
    if features["has_device"] and not features["device_seen"] and features["known_devices"] > 0:
        hits.append(_hit(ReasonCode.NEW_DEVICE, ruleset.new_device, "device never seen"))
    if not features["payee_known"] and features["known_payees"] > 0:
        hits.append(_hit(ReasonCode.NEW_PAYEE, ruleset.new_payee, "destination never paid"))

    anomaly = ruleset.amount_anomaly
    p95 = features["amount_p95"]
    if (
        features["history_size"] >= anomaly.min_history
        and p95 > 0
        and features["amount"] > anomaly.factor * p95
    ):
        hits.append(
            _hit(
                ReasonCode.AMOUNT_ANOMALY,
                anomaly.effect,
                f"{features['amount']:g} > {anomaly.factor:g} x p95 {p95:g}",
            )
        )

    travel = ruleset.impossible_travel
    if (
        features["geo_speed_kmh"] > travel.max_speed_kmh
        and features["geo_km"] >= travel.min_distance_km
    ):
        hits.append(
            _hit(
                ReasonCode.IMPOSSIBLE_TRAVEL,
                travel.effect,
                f"{features['geo_km']:.0f} km at {features['geo_speed_kmh']:.0f} km/h",
            )
        )
    hits.extend(deny_list_hits(txn, ruleset))
    return hits


def fallback_rules(
    txn: Transaction, features: Mapping[str, float], ruleset: Ruleset
) -> list[RuleHit]:
    """The rules that need no state, plus the fallback's amount limit."""
    hits = deny_list_hits(txn, ruleset)
    limit = ruleset.fallback.review_above
    if features["amount"] > limit:
        hits.append(
            RuleHit(
                ReasonCode.FALLBACK_AMOUNT_LIMIT.value,
                0.0,
                Decision.REVIEW,
                f"{features['amount']:g} > {limit:g} while velocity state is unavailable",
            )
        )
    return hits


def combine(
    hits: Sequence[RuleHit],
    model_score: float,
    model_weight: float,
    ruleset: Ruleset,
) -> Assessment:
    """Noisy-OR of the rules and the model, then thresholds, then forced decisions."""
    keep = 1.0
    for hit in hits:
        keep *= 1.0 - hit.weight
    rules_score = 1.0 - keep
    score = 1.0 - keep * (1.0 - model_weight * model_score)
    score = min(max(score, 0.0), 1.0)

    if score >= ruleset.decline_threshold:
        # Corroboration: without enough rule evidence a high score is held, not refused.
        corroborated = rules_score >= ruleset.decline_min_rules_score
        decision = Decision.DECLINE if corroborated else Decision.REVIEW
    elif score >= ruleset.review_threshold:
        decision = Decision.REVIEW
    else:
        decision = Decision.APPROVE
    decision = most_severe(decision, *(h.force for h in hits if h.force is not None))

    codes = [h.code for h in hits]
    if model_weight > 0 and model_score >= ruleset.model.reason_threshold:
        codes.append(ReasonCode.ML_SCORE.value)
    return Assessment(
        score=score,
        decision=decision,
        reason_codes=tuple(codes),
        rules_score=rules_score,
        model_score=model_score,
        hits=tuple(hits),
    )


def assess(
    txn: Transaction, features: Mapping[str, float], ruleset: Ruleset, model: TreeEnsemble
) -> Assessment:
    """The normal path: every rule and the full model."""
    model_score = model.predict(vector(features, model.feature_names))
    return combine(
        evaluate_rules(txn, features, ruleset), model_score, ruleset.model.weight, ruleset
    )


def assess_fallback(
    txn: Transaction, features: Mapping[str, float], ruleset: Ruleset, model: TreeEnsemble
) -> Assessment:
    """Without state: stateless rules and the stateless model (see docs/risk.md)."""
    assert set(model.feature_names) <= set(STATELESS_FEATURES)
    model_score = model.predict(vector(features, model.feature_names))
    return combine(
        fallback_rules(txn, features, ruleset), model_score, ruleset.fallback.model_weight, ruleset
    )
