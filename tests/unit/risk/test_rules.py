"""Golden decisions: each crafted transaction triggers exactly its own reason code.

The history starts quiet (support.quiet_history) and each test changes one
thing, so a rule that fires for the wrong reason, or a second rule that
fires along with it, fails here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.risk.domain.features import compute_features, stateless_features
from services.risk.domain.model import Decision, GeoFix, History, RuleHit, Transaction, epoch_ms
from services.risk.domain.rules import (
    ReasonCode,
    assess,
    assess_fallback,
    combine,
    evaluate_rules,
    fallback_rules,
)
from services.risk.domain.ruleset import Ruleset

from .support import BERLIN, NOW, config, quiet_history, txn


def ruleset() -> Ruleset:
    return config().ruleset


def codes(t: Transaction, h: History, rules: Ruleset | None = None) -> list[str]:
    rules = rules or ruleset()
    features = compute_features(t, h, rules.state.windows_seconds)
    return [hit.code for hit in evaluate_rules(t, features, rules)]


def test_a_quiet_transaction_fires_no_rule() -> None:
    """The baseline all other golden cases start from triggers nothing."""
    assert codes(txn(), quiet_history()) == []


def test_too_many_transactions_in_a_minute_is_velocity_count() -> None:
    """Five earlier transactions in the last minute make this one the sixth (> 5)."""
    assert codes(txn(), quiet_history(source_counts=(5, 6, 8))) == ["VELOCITY_COUNT"]


def test_too_much_money_in_a_day_is_velocity_amount() -> None:
    """EUR 19,980 already sent today plus EUR 50 exceeds the 24 h limit of 20,000."""
    h = quiet_history(source_amounts=(0, 40_00, 19_980_00))
    assert codes(txn(), h) == ["VELOCITY_AMOUNT"]


def test_a_busy_device_is_device_velocity() -> None:
    """Ten earlier transactions from one device in an hour make this the eleventh (> 10)."""
    assert codes(txn(), quiet_history(device_counts=(0, 10, 11))) == ["DEVICE_VELOCITY"]
    assert codes(txn(), quiet_history(device_counts=(0, 9, 11))) == []


def test_many_payments_into_one_account_is_destination_velocity() -> None:
    """Fifteen earlier payments into the destination within an hour is fan-in."""
    assert codes(txn(), quiet_history(destination_counts=(0, 15, 15))) == ["DESTINATION_VELOCITY"]


def test_a_device_the_customer_never_used_is_new_device() -> None:
    """An unseen device for a customer with a known device."""
    assert codes(txn(device_id="phone-2"), quiet_history(device_seen=False)) == ["NEW_DEVICE"]


def test_the_first_device_of_a_new_customer_is_not_new_device() -> None:
    """Without a known device there is no baseline to deviate from."""
    assert codes(txn(), quiet_history(device_seen=False, known_devices=0)) == []


def test_a_destination_never_paid_is_new_payee() -> None:
    """An unknown destination for a source that has paid others."""
    assert codes(txn(), quiet_history(payee_known=False)) == ["NEW_PAYEE"]


def test_an_amount_far_above_the_usual_is_amount_anomaly() -> None:
    """EUR 500 against a p95 of EUR 60 is more than three times the usual."""
    assert codes(txn(amount=500_00), quiet_history()) == ["AMOUNT_ANOMALY"]


def test_amount_anomaly_needs_a_minimum_history() -> None:
    """Four recent amounts are fewer than min_history (5): no verdict on them."""
    h = quiet_history(recent_amounts=(45_00, 60_00, 38_00, 52_00))
    assert codes(txn(amount=500_00), h) == []


def test_paris_then_berlin_in_ten_minutes_is_impossible_travel() -> None:
    """About 880 km in ten minutes implies over 5,000 km/h."""
    h = quiet_history(last_fix=GeoFix(BERLIN, epoch_ms(NOW - timedelta(minutes=10))))
    assert codes(txn(), h) == ["IMPOSSIBLE_TRAVEL"]


def test_paris_then_berlin_in_five_hours_is_a_trip() -> None:
    """About 880 km in five hours is under 200 km/h: a train, not fraud."""
    h = quiet_history(last_fix=GeoFix(BERLIN, epoch_ms(NOW - timedelta(hours=5))))
    assert codes(txn(), h) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"source_account_id": "acc-mallory"},
        {"destination_account_id": "acc-mallory"},
        {"device_id": "burner"},
    ],
)
def test_a_listed_account_or_device_is_deny_list(changes: dict[str, str]) -> None:
    """Source, destination and device are each checked against the deny list."""
    rules = replace(
        ruleset(),
        deny_list=replace(
            ruleset().deny_list, accounts=frozenset({"acc-mallory"}), devices=frozenset({"burner"})
        ),
    )
    assert codes(txn(**changes), quiet_history(), rules) == ["DENY_LIST"]


def test_the_deny_list_declines_whatever_the_score() -> None:
    """DENY_LIST forces DECLINE even with a model score of zero."""
    rules = replace(
        ruleset(), deny_list=replace(ruleset().deny_list, accounts=frozenset({"acc-bob"}))
    )
    t = txn()
    features = compute_features(t, quiet_history(), rules.state.windows_seconds)
    outcome = combine(evaluate_rules(t, features, rules), 0.0, 1.0, rules)
    assert outcome.decision is Decision.DECLINE
    assert outcome.reason_codes == ("DENY_LIST",)


def test_impossible_travel_forces_review_even_on_a_low_score() -> None:
    """The default ruleset forces REVIEW for IMPOSSIBLE_TRAVEL; its weight alone would not."""
    hit = RuleHit("IMPOSSIBLE_TRAVEL", 0.5, Decision.REVIEW)
    outcome = combine([hit], 0.0, 1.0, ruleset())
    assert outcome.score == pytest.approx(0.5)
    assert outcome.decision is Decision.REVIEW


def test_rule_weights_and_the_model_combine_as_a_noisy_or() -> None:
    """Two hits of 0.5 and 0.2 and a model score of 0.5 give 1 - 0.5*0.8*0.5 = 0.8."""
    hits = [RuleHit("A", 0.5), RuleHit("B", 0.2)]
    outcome = combine(hits, 0.5, 1.0, ruleset())
    assert outcome.rules_score == pytest.approx(0.6)
    assert outcome.score == pytest.approx(0.8)
    assert outcome.decision is Decision.REVIEW  # 0.6 <= 0.8 < 0.9


def test_scores_at_the_thresholds_take_the_stricter_decision() -> None:
    """A score equal to a threshold is at that threshold's decision (DECLINE corroborated)."""
    rules = ruleset()
    strong = [RuleHit("VELOCITY_COUNT", 0.45)]
    at_decline = 1 - (1 - rules.decline_threshold) / (1 - 0.45)  # model share for score = decline
    assert combine([], rules.review_threshold, 1.0, rules).decision is Decision.REVIEW
    assert combine(strong, at_decline, 1.0, rules).score == pytest.approx(rules.decline_threshold)
    assert combine(strong, at_decline + 1e-9, 1.0, rules).decision is Decision.DECLINE
    assert combine([], 0.0, 1.0, rules).decision is Decision.APPROVE


def test_the_model_alone_never_declines() -> None:
    """ML_SCORE with no rule behind it is held for review, however sure the model is."""
    outcome = combine([], 1.0, 1.0, ruleset())
    assert outcome.score == pytest.approx(1.0)
    assert outcome.decision is Decision.REVIEW
    assert outcome.reason_codes == ("ML_SCORE",)


@pytest.mark.parametrize(
    ("hits", "decision"),
    [
        ([RuleHit("NEW_DEVICE", 0.2)], Decision.REVIEW),  # a new phone: everyday
        ([RuleHit("NEW_PAYEE", 0.1)], Decision.REVIEW),  # a new friend: everyday
        ([RuleHit("NEW_DEVICE", 0.2), RuleHit("NEW_PAYEE", 0.1)], Decision.DECLINE),  # takeover
        ([RuleHit("VELOCITY_COUNT", 0.45)], Decision.DECLINE),
        ([RuleHit("AMOUNT_ANOMALY", 0.35)], Decision.DECLINE),
    ],
)
def test_a_high_score_declines_only_with_corroborating_rules(
    hits: list[RuleHit], decision: Decision
) -> None:
    """Above the decline threshold the rules alone must reach decline_min_rules_score (0.25)."""
    rules = ruleset()
    outcome = combine(hits, 0.99, 1.0, rules)
    assert outcome.score >= rules.decline_threshold
    assert outcome.decision is decision


def test_the_fallback_model_alone_never_declines() -> None:
    """Without state the same policy holds: the stateless model alone is at most REVIEW."""
    rules = ruleset()
    t = txn()
    outcome = combine(fallback_rules(t, stateless_features(t), rules), 0.99, 1.0, rules)
    assert outcome.decision is Decision.REVIEW


def test_a_high_model_score_is_reported_as_ml_score() -> None:
    """ML_SCORE appears once the model's probability reaches reason_threshold."""
    rules = ruleset()
    assert combine([], rules.model.reason_threshold, 1.0, rules).reason_codes == ("ML_SCORE",)
    assert combine([], rules.model.reason_threshold / 2, 1.0, rules).reason_codes == ()


def test_the_fallback_reviews_amounts_above_its_limit() -> None:
    """Without state, EUR 5,000 exceeds fallback.review_above and is held for review."""
    rules = ruleset()
    t = txn(amount=5_000_00)
    hits = fallback_rules(t, stateless_features(t), rules)
    assert [h.code for h in hits] == ["FALLBACK_AMOUNT_LIMIT"]
    outcome = assess_fallback(t, stateless_features(t), rules, config().model.stateless)
    assert outcome.decision in (Decision.REVIEW, Decision.DECLINE)
    assert "FALLBACK_AMOUNT_LIMIT" in outcome.reason_codes


def test_the_fallback_approves_a_small_ordinary_payment() -> None:
    """EUR 50 from a phone needs no state to be approved."""
    t = txn()
    outcome = assess_fallback(t, stateless_features(t), ruleset(), config().model.stateless)
    assert outcome.decision is Decision.APPROVE


def test_a_quiet_transaction_is_approved_by_rules_and_model_together() -> None:
    """The full path (rules + model) approves the quiet baseline."""
    t = txn()
    features = compute_features(t, quiet_history(), ruleset().state.windows_seconds)
    outcome = assess(t, features, ruleset(), config().model.full)
    assert outcome.decision is Decision.APPROVE
    assert outcome.score < ruleset().review_threshold


def test_every_reason_code_is_documented() -> None:
    """docs/risk.md lists every reason code the rules can emit."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "risk.md").read_text()
    missing = [code.value for code in ReasonCode if f"`{code.value}`" not in doc]
    assert missing == []
