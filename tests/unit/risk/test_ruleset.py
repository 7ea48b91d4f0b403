"""Ruleset validation: a bad ruleset is refused at load with every problem named."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.risk.adapters.ruleset_file import DEFAULT_RULESET, load_ruleset, model_path
from services.risk.domain.ruleset import RulesetError, parse_ruleset


def default_data() -> dict[str, Any]:
    with DEFAULT_RULESET.open("rb") as f:
        return tomllib.load(f)


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(data)
    return caught.value.problems


def test_the_default_ruleset_loads_with_its_pinned_model() -> None:
    """The shipped ruleset validates and its model file matches the pinned hash."""
    config = load_ruleset()
    assert config.ruleset.version
    assert config.model.sha256 == config.ruleset.model.sha256
    assert config.model.version == f"hgb-{config.model.sha256[:12]}"


def test_a_review_threshold_above_decline_is_refused() -> None:
    """review must not exceed decline."""
    data = default_data()
    data["thresholds"] = {"review": 0.95, "decline": 0.9}
    assert any("review (0.95) must not be above decline (0.9)" in p for p in problems_of(data))


def test_the_decline_corroboration_is_required_and_bounded() -> None:
    """decline_min_rules_score must be there (no silent default) and within [0, 1]."""
    data = default_data()
    del data["thresholds"]["decline_min_rules_score"]
    assert "thresholds.decline_min_rules_score: is required" in problems_of(data)
    data["thresholds"]["decline_min_rules_score"] = 1.5
    assert "thresholds.decline_min_rules_score: must be <= 1, got 1.5" in problems_of(data)


def test_a_decline_corroboration_the_rules_cannot_reach_is_refused() -> None:
    """If every rule firing at once stays below it, no score could ever decline."""
    data = default_data()
    for name, table in data["rules"].items():
        if name != "deny_list":
            table["weight"] = 0.05
    data["thresholds"]["decline_min_rules_score"] = 0.5
    assert any(
        p.startswith("thresholds.decline_min_rules_score (0.5) is above what the rules'")
        for p in problems_of(data)
    )


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([60, 0, 86400], "state.windows_seconds[1]: must be > 0"),
        ([3600, 60, 86400], "must be strictly increasing"),
        ([60, 3600, 30 * 86400], "must not exceed"),
        ([], "must list at least one window"),
    ],
)
def test_windows_must_be_positive_increasing_and_bounded(windows: list[int], message: str) -> None:
    """Velocity windows are positive seconds, shortest first, at most a week."""
    data = default_data()
    data["state"]["windows_seconds"] = windows
    assert any(message in p for p in problems_of(data))


def test_a_weight_outside_zero_to_one_is_refused() -> None:
    """Rule weights are probabilities of a noisy-OR: within [0, 1]."""
    data = default_data()
    data["rules"]["new_device"]["weight"] = 1.5
    assert "rules.new_device.weight: must be <= 1, got 1.5" in problems_of(data)


def test_limits_need_one_value_per_window() -> None:
    """A velocity rule with two limits for three windows is refused."""
    data = default_data()
    data["rules"]["velocity_count"]["limits"] = [5, 30]
    assert any(
        p.startswith("rules.velocity_count.limits: needs 3 values") for p in problems_of(data)
    )


def test_a_misspelt_setting_is_refused_rather_than_ignored() -> None:
    """Unknown keys are errors: a typo must not silently leave a default in force."""
    data = default_data()
    data["rules"]["amount_anomaly"]["factr"] = 2.0
    assert "rules.amount_anomaly.factr: is not a known setting (misspelt?)" in problems_of(data)


def test_a_forced_decision_must_be_review_or_decline() -> None:
    """Forcing APPROVE would let a rule lower the outcome; it is not allowed."""
    data = default_data()
    data["rules"]["deny_list"]["force"] = "APPROVE"
    assert any("rules.deny_list.force" in p for p in problems_of(data))


def test_every_problem_is_reported_at_once() -> None:
    """Three independent mistakes give three problems in one error."""
    data = default_data()
    data["thresholds"]["review"] = -1
    data["model"]["sha256"] = "not-a-hash"
    del data["fallback"]
    problems = problems_of(data)
    assert len(problems) == 3
    assert "fallback: is required" in problems


def _copy_ruleset(tmp_path: Path) -> Path:
    config = load_ruleset()
    shutil.copy(model_path(config.ruleset, DEFAULT_RULESET), tmp_path / "model.json")
    text = DEFAULT_RULESET.read_text().replace("../models/default-model.json", "model.json")
    target = tmp_path / "ruleset.toml"
    target.write_text(text)
    return target


def test_a_model_file_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    """One changed byte in the model file and the ruleset no longer loads."""
    ruleset = _copy_ruleset(tmp_path)
    model = tmp_path / "model.json"
    model.write_bytes(model.read_bytes().replace(b'"baseline":', b'"baseline": ', 1))
    with pytest.raises(RulesetError, match="refusing to load it"):
        load_ruleset(ruleset)


def test_a_model_trained_for_other_windows_is_refused(tmp_path: Path) -> None:
    """The model's features must be the ones this ruleset's windows produce."""
    ruleset = _copy_ruleset(tmp_path)
    ruleset.write_text(
        ruleset.read_text()
        .replace("windows_seconds = [60, 3600, 86400]", "windows_seconds = [60, 86400]")
        .replace("limits = [5, 30, 100]", "limits = [5, 100]")
        .replace("limits = [2000.0, 10000.0, 20000.0]", "limits = [2000.0, 20000.0]")
        .replace("limits = [8, 10, 120]", "limits = [8, 120]")
        .replace("limits = [8, 15, 30]", "limits = [8, 30]")
    )
    with pytest.raises(RulesetError, match="trained on other features"):
        load_ruleset(ruleset)


def test_a_file_that_is_not_toml_is_refused_with_its_parse_error(tmp_path: Path) -> None:
    """Broken TOML is a RulesetError naming the file, not a stack trace."""
    broken = tmp_path / "broken.toml"
    broken.write_text("version = \n")
    with pytest.raises(RulesetError, match="not valid TOML"):
        load_ruleset(broken)
