"""Loading a ruleset file and the model it pins, with every check before first use.

`load_ruleset(path)` reads the TOML (stdlib tomllib), validates it
(domain/ruleset.py), loads the model file named by `model.path` (relative to
the ruleset) only if its SHA-256 equals `model.sha256`, and checks that the
model was trained on the features this ruleset's windows produce. Any problem
is a `RulesetError` that says what to fix; the service refuses to start with
one rather than score with a half-valid configuration.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from services.risk.domain.ensemble import ModelBundle
from services.risk.domain.features import STATELESS_FEATURES, feature_names
from services.risk.domain.ruleset import Ruleset, RulesetError, parse_ruleset

from .model_file import ModelFileError, load_model

DEFAULT_RULESET = Path(__file__).resolve().parent.parent / "rulesets" / "default.toml"


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """A validated ruleset and the model it pins: everything a decision depends on."""

    ruleset: Ruleset
    model: ModelBundle
    source: Path


def read_ruleset(path: Path) -> Ruleset:
    """The ruleset alone (no model check): for tools that replace the model."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RulesetError([f"cannot read it: {exc.strerror}"], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError([f"not valid TOML: {exc}"], str(path)) from exc
    return parse_ruleset(data, str(path))


def model_path(ruleset: Ruleset, ruleset_path: Path) -> Path:
    return (ruleset_path.parent / ruleset.model.path).resolve()


def load_ruleset(path: Path = DEFAULT_RULESET) -> RiskConfig:
    ruleset = read_ruleset(path)
    try:
        model = load_model(model_path(ruleset, path), ruleset.model.sha256)
    except ModelFileError as exc:
        raise RulesetError([f"model: {exc}"], str(path)) from exc
    check_model_fits(ruleset, model, str(path))
    return RiskConfig(ruleset, model, path)


def check_model_fits(ruleset: Ruleset, model: ModelBundle, source: str) -> None:
    expected = feature_names(ruleset.state.windows_seconds)
    problems = []
    if model.full.feature_names != expected:
        problems.append(
            "model: the model was trained on other features than state.windows_seconds "
            f"produces (model: {len(model.full.feature_names)} features, ruleset: "
            f"{len(expected)}); retrain it with this ruleset"
        )
    if not set(model.stateless.feature_names) <= set(STATELESS_FEATURES):
        problems.append("model: the fallback model uses features that need state")
    if problems:
        raise RulesetError(problems, source)
