"""The ruleset: every threshold, weight, window and list the decision depends on.

A ruleset is data (rulesets/*.toml), versioned by its `version` string, which
every stored decision records. `parse_ruleset` turns the parsed TOML mapping
into a frozen `Ruleset` and validates it whole: it reports *every* problem at
once, each with its dotted path (`rules.velocity_count.limits: ...`), and
refuses unknown keys so a misspelt threshold cannot silently fall back to a
default. Reading the file and checking the pinned model hash are the
adapter's job (adapters/ruleset_file.py); this module does no I/O.

Money thresholds are in major units of the transaction's currency (EUR 10.50
is 10.5). There is no FX conversion: the thresholds assume one reference
currency, which is what the synthetic data and the default ruleset use.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Decision

MAX_WINDOW_SECONDS = 7 * 86_400
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RulesetError(ValueError):
    """The ruleset cannot be used; the message lists every problem found."""

    def __init__(self, problems: Sequence[str], source: str = "ruleset") -> None:
        self.problems = list(problems)
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class RuleEffect:
    """How a fired rule moves the outcome: score weight in [0, 1], optional forced decision."""

    weight: float
    force: Decision | None = None


@dataclass(frozen=True, slots=True)
class VelocityRule:
    effect: RuleEffect
    limits: tuple[float, ...]  # one per window; fires when the window's value exceeds it


@dataclass(frozen=True, slots=True)
class AmountAnomalyRule:
    effect: RuleEffect
    factor: float  # fires above factor x the p95 of the recent amounts
    min_history: int


@dataclass(frozen=True, slots=True)
class ImpossibleTravelRule:
    effect: RuleEffect
    max_speed_kmh: float
    min_distance_km: float


@dataclass(frozen=True, slots=True)
class DenyListRule:
    effect: RuleEffect
    accounts: frozenset[str]
    devices: frozenset[str]


@dataclass(frozen=True, slots=True)
class StateSettings:
    windows_seconds: tuple[int, ...]
    recent_amounts: int
    device_retention_days: int
    payee_retention_days: int
    geo_retention_days: int
    velocity_cap: int


@dataclass(frozen=True, slots=True)
class ModelSettings:
    path: str  # relative to the ruleset file
    sha256: str
    weight: float
    reason_threshold: float


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    review_above: float  # major units
    model_weight: float


@dataclass(frozen=True, slots=True)
class Ruleset:
    version: str
    review_threshold: float
    decline_threshold: float
    # A score-based DECLINE also needs the fired rules alone to reach this
    # (their noisy-OR); short of it the outcome is REVIEW. So the model alone
    # never declines. Forced decisions (the deny list) do not depend on it.
    decline_min_rules_score: float
    state: StateSettings
    model: ModelSettings
    fallback: FallbackSettings
    velocity_count: VelocityRule
    velocity_amount: VelocityRule
    device_velocity: VelocityRule
    destination_velocity: VelocityRule
    new_device: RuleEffect
    new_payee: RuleEffect
    amount_anomaly: AmountAnomalyRule
    impossible_travel: ImpossibleTravelRule
    deny_list: DenyListRule


class _Reader:
    """Typed access to one TOML table, collecting problems instead of raising at the first."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self._where(key)}: {message}")

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        if key not in self.data:
            self.problem(key, "is required")
            return None
        return self.data[key]

    def table(self, key: str) -> _Reader:
        value = self._get(key)
        if value is not None and not isinstance(value, Mapping):
            self.problem(key, f"must be a table, got {_kind(value)}")
            value = None
        return _Reader(value or {}, self._where(key), self.problems if value is not None else [])

    def string(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            self.seen.add(key)
            return default
        value = self._get(key)
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"must be a non-empty string, got {value!r}")
            return ""
        return value

    def number(
        self,
        key: str,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        integer: bool = False,
        default: float | None = None,
    ) -> float:
        if default is not None and key not in self.data:
            self.seen.add(key)
            return default
        value = self._get(key)
        if value is None:
            return 0.0
        return self._check_number(key, value, low, high, low_open, integer)

    def _check_number(
        self,
        key: str,
        value: Any,
        low: float | None,
        high: float | None,
        low_open: bool,
        integer: bool,
    ) -> float:
        # bool is an int subclass: `true` is not a threshold.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"must be a number, got {_kind(value)}")
            return 0.0
        if integer and not isinstance(value, int):
            self.problem(key, f"must be a whole number, got {value!r}")
            return 0.0
        if value != value:  # NaN
            self.problem(key, "must be a number, got nan")
            return 0.0
        if low is not None and (value <= low if low_open else value < low):
            self.problem(key, f"must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        if high is not None and value > high:
            self.problem(key, f"must be <= {high:g}, got {value!r}")
        return float(value)

    def positive_numbers(self, key: str, *, integer: bool = False) -> tuple[float, ...]:
        value = self._get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(key, f"must be a list of numbers, got {_kind(value)}")
            return ()
        return tuple(
            self._check_number(f"{key}[{i}]", v, 0.0, None, True, integer)
            for i, v in enumerate(value)
        )

    def strings(self, key: str) -> frozenset[str]:
        self.seen.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(key, "must be a list of non-empty strings")
            return frozenset()
        return frozenset(value)

    def decision(self, key: str) -> Decision | None:
        self.seen.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if value not in ("REVIEW", "DECLINE"):
            self.problem(key, f'must be "REVIEW" or "DECLINE", got {value!r}')
            return None
        return Decision(value)

    def effect(self) -> RuleEffect:
        return RuleEffect(self.number("weight", low=0.0, high=1.0), self.decision("force"))

    def close(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            self.problem(key, "is not a known setting (misspelt?)")


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def parse_ruleset(data: Mapping[str, Any], source: str = "ruleset") -> Ruleset:
    """Validate a parsed ruleset; raise RulesetError listing every problem."""
    problems: list[str] = []
    top = _Reader(data, "", problems)
    version = top.string("version")

    thresholds = top.table("thresholds")
    review = thresholds.number("review", low=0.0, high=1.0, low_open=True)
    decline = thresholds.number("decline", low=0.0, high=1.0, low_open=True)
    min_rules = thresholds.number("decline_min_rules_score", low=0.0, high=1.0)
    thresholds.close()
    if review > decline:
        problems.append(
            f"thresholds: review ({review:g}) must not be above decline ({decline:g}), "
            "or a score could decline without ever being reviewable"
        )

    state = _state(top.table("state"))
    windows = len(state.windows_seconds)

    model_t = top.table("model")
    sha = model_t.string("sha256")
    if sha and not _SHA256.match(sha):
        model_t.problem("sha256", "must be 64 lower-case hex digits (sha256sum of the model file)")
    model = ModelSettings(
        path=model_t.string("path"),
        sha256=sha,
        weight=model_t.number("weight", low=0.0, high=1.0),
        reason_threshold=model_t.number("reason_threshold", low=0.0, high=1.0, low_open=True),
    )
    model_t.close()

    fallback_t = top.table("fallback")
    fallback = FallbackSettings(
        review_above=fallback_t.number("review_above", low=0.0, low_open=True),
        model_weight=fallback_t.number("model_weight", low=0.0, high=1.0),
    )
    fallback_t.close()

    rules = top.table("rules")
    velocity = {
        name: _velocity(rules.table(name), windows, integer=name != "velocity_amount")
        for name in ("velocity_count", "velocity_amount", "device_velocity", "destination_velocity")
    }
    new_device_t = rules.table("new_device")
    new_device = new_device_t.effect()
    new_device_t.close()
    new_payee_t = rules.table("new_payee")
    new_payee = new_payee_t.effect()
    new_payee_t.close()

    anomaly_t = rules.table("amount_anomaly")
    anomaly = AmountAnomalyRule(
        effect=anomaly_t.effect(),
        factor=anomaly_t.number("factor", low=1.0, low_open=True),
        min_history=int(anomaly_t.number("min_history", low=1, integer=True)),
    )
    anomaly_t.close()
    if anomaly.min_history > state.recent_amounts > 0:
        problems.append(
            f"rules.amount_anomaly.min_history ({anomaly.min_history}) exceeds "
            f"state.recent_amounts ({state.recent_amounts}): the rule could never fire"
        )

    travel_t = rules.table("impossible_travel")
    travel = ImpossibleTravelRule(
        effect=travel_t.effect(),
        max_speed_kmh=travel_t.number("max_speed_kmh", low=0.0, low_open=True),
        min_distance_km=travel_t.number("min_distance_km", low=0.0),
    )
    travel_t.close()

    deny_t = rules.table("deny_list")
    deny = DenyListRule(
        effect=deny_t.effect(),
        accounts=deny_t.strings("accounts"),
        devices=deny_t.strings("devices"),
    )
    deny_t.close()
    rules.close()
    top.close()

    # Every rule but the deny list (which forces its DECLINE) firing at once.
    weights = [
        *(v.effect.weight for v in velocity.values()),
        new_device.weight,
        new_payee.weight,
        anomaly.effect.weight,
        travel.effect.weight,
    ]
    reachable = 1.0 - math.prod(1.0 - w for w in weights)
    if min_rules > reachable:
        problems.append(
            f"thresholds.decline_min_rules_score ({min_rules:g}) is above what the rules' "
            f"weights can reach together ({reachable:.3f}): only a forced decision could decline"
        )

    if problems:
        raise RulesetError(problems, source)
    return Ruleset(
        version=version,
        review_threshold=review,
        decline_threshold=decline,
        decline_min_rules_score=min_rules,
        state=state,
        model=model,
        fallback=fallback,
        velocity_count=velocity["velocity_count"],
        velocity_amount=velocity["velocity_amount"],
        device_velocity=velocity["device_velocity"],
        destination_velocity=velocity["destination_velocity"],
        new_device=new_device,
        new_payee=new_payee,
        amount_anomaly=anomaly,
        impossible_travel=travel,
        deny_list=deny,
    )


def _state(t: _Reader) -> StateSettings:
    windows = tuple(int(w) for w in t.positive_numbers("windows_seconds", integer=True))
    if not windows and "windows_seconds" in t.data:
        t.problem("windows_seconds", "must list at least one window")
    if any(b <= a for a, b in itertools.pairwise(windows)):
        t.problem("windows_seconds", f"must be strictly increasing, got {list(windows)}")
    if windows and windows[-1] > MAX_WINDOW_SECONDS:
        t.problem("windows_seconds", f"must not exceed {MAX_WINDOW_SECONDS} (7 days)")
    settings = StateSettings(
        windows_seconds=windows,
        recent_amounts=int(t.number("recent_amounts", low=1, high=1000, integer=True)),
        device_retention_days=int(t.number("device_retention_days", low=1, integer=True)),
        payee_retention_days=int(t.number("payee_retention_days", low=1, integer=True)),
        geo_retention_days=int(t.number("geo_retention_days", low=1, integer=True)),
        velocity_cap=int(t.number("velocity_cap", low=1, integer=True)),
    )
    t.close()
    return settings


def _velocity(t: _Reader, windows: int, *, integer: bool) -> VelocityRule:
    effect = t.effect()
    limits = t.positive_numbers("limits", integer=integer)
    if windows and "limits" in t.data and len(limits) != windows:
        t.problem(
            "limits",
            f"needs {windows} values, one per window in state.windows_seconds, got {len(limits)}",
        )
    t.close()
    return VelocityRule(effect, limits)
