"""Training and evaluating the risk model on the synthetic stream.

The dataset is built the way serving sees transactions: the stream is
replayed in time order through `InMemoryState` (the executable spec of the
Redis script) and every transaction's features come from
`compute_features`, the function the service calls. Nothing here computes a
feature of its own, so what the model learns is what serving will feed it.

Split by time, not at random: the model is fitted on the first 70 % of the
period and evaluated on the last 30 %, as it would be deployed (fraud
patterns in the future, history from the past). State carries over the
boundary, as in production.

Two models are fitted, with identical settings:
* `full`: every feature; the normal path;
* `stateless`: only the features computable without Redis; the fallback's.

They are HistGradientBoostingClassifier ensembles exported as plain trees
(domain/ensemble.py) and written as canonical JSON (adapters/model_file.py);
training is deterministic (fixed seed, no early-stopping split, no
subsampling), so the same code and seed give the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# scikit-learn ships no type information; only this offline module imports it.
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_curve

from services.risk.adapters.model_file import dump_model
from services.risk.domain.ensemble import ModelBundle, Tree, TreeEnsemble
from services.risk.domain.features import STATELESS_FEATURES, compute_features, feature_names
from services.risk.domain.history import InMemoryState, StateParams
from services.risk.domain.model import Decision, Transaction
from services.risk.domain.rules import assess, combine, evaluate_rules
from services.risk.domain.ruleset import Ruleset
from services.risk.synthetic import SCENARIOS, SyntheticConfig, generate, time_split

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[Any]

TRAIN_FRACTION = 0.7
MAX_FALSE_POSITIVE_RATE = 0.01
HYPERPARAMETERS: dict[str, Any] = {
    "max_iter": 150,
    "learning_rate": 0.08,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 30,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


@dataclass(frozen=True)
class Dataset:
    names: tuple[str, ...]
    X: Matrix
    y: Vector  # 1 = fraud
    scenario: Vector  # "legit" or a scenario name
    rules_score: Vector
    transactions: list[Transaction]
    split: int  # first row of the held-out part

    def stateless_columns(self) -> list[int]:
        return [self.names.index(n) for n in STATELESS_FEATURES]


def build_dataset(config: SyntheticConfig, ruleset: Ruleset) -> Dataset:
    stream = generate(config)
    windows = ruleset.state.windows_seconds
    names = feature_names(windows)
    state = InMemoryState(StateParams.from_settings(ruleset.state))
    rows: list[list[float]] = []
    rules_scores: list[float] = []
    for item in stream:
        features = compute_features(item.txn, state.observe(item.txn), windows)
        rows.append([features[n] for n in names])
        hits = evaluate_rules(item.txn, features, ruleset)
        rules_scores.append(combine(hits, 0.0, 0.0, ruleset).rules_score)
    return Dataset(
        names=names,
        X=np.asarray(rows, dtype=np.float64),
        y=np.asarray([int(item.fraud) for item in stream]),
        scenario=np.asarray([item.scenario for item in stream]),
        rules_score=np.asarray(rules_scores),
        transactions=[item.txn for item in stream],
        split=time_split(stream, config, TRAIN_FRACTION),
    )


def fit(X: Matrix, y: Vector, seed: int) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(random_state=seed, **HYPERPARAMETERS)
    model.fit(X, y)
    return model


def export(model: HistGradientBoostingClassifier, names: Sequence[str]) -> TreeEnsemble:
    """scikit-learn's fitted trees as plain arrays (see domain/ensemble.py for the walk)."""
    if list(model.classes_) != [0, 1]:
        raise ValueError("expected a binary model with classes [0, 1]")
    trees = []
    for iteration in model._predictors:
        (predictor,) = iteration  # one tree per iteration for a binary model
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported by the exported walk")
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            Tree(
                feature=tuple(int(v) for v in np.where(leaf, -1, nodes["feature_idx"])),
                threshold=tuple(float(v) for v in np.where(leaf, 0.0, nodes["num_threshold"])),
                left=tuple(int(v) for v in np.where(leaf, 0, nodes["left"])),
                right=tuple(int(v) for v in np.where(leaf, 0, nodes["right"])),
                value=tuple(float(v) for v in np.where(leaf, nodes["value"], 0.0)),
                missing_left=tuple(
                    bool(v) for v in np.where(leaf, False, nodes["missing_go_to_left"])
                ),
            )
        )
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
    return TreeEnsemble(tuple(names), baseline, tuple(trees))


@dataclass(frozen=True)
class TrainedModel:
    content: bytes  # the model file
    full: HistGradientBoostingClassifier
    stateless: HistGradientBoostingClassifier
    dataset: Dataset


def train(config: SyntheticConfig, ruleset: Ruleset) -> TrainedModel:
    data = build_dataset(config, ruleset)
    X, y = data.X[: data.split], data.y[: data.split]
    columns = data.stateless_columns()
    full = fit(X, y, config.seed)
    stateless = fit(X[:, columns], y, config.seed)
    training = {
        "generator": "services.risk.synthetic",
        "seed": config.seed,
        "customers": config.customers,
        "days": config.days,
        "train_fraction": TRAIN_FRACTION,
        "train_rows": int(data.split),
        "train_fraud": int(y.sum()),
        "windows_seconds": list(ruleset.state.windows_seconds),
        "hyperparameters": HYPERPARAMETERS,
    }
    content = dump_model(export(full, data.names), export(stateless, STATELESS_FEATURES), training)
    return TrainedModel(content, full, stateless, data)


# -- evaluation --------------------------------------------------------------------

SCORERS = ("combined", "model", "rules", "random")


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    positives: int
    negatives: int
    pr_auc: dict[str, float]
    recall_at_fpr: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    results: list[ScenarioResult]
    # Decision counts per truth: "legit", each scenario, then "fraud" (all scenarios).
    decisions: dict[str, dict[Decision, int]]
    test_rows: int
    train_rows: int


def recall_at_fpr(y: Vector, scores: Vector, max_fpr: float = MAX_FALSE_POSITIVE_RATE) -> float:
    """The best recall whose false-positive rate stays within max_fpr (ties move together)."""
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def evaluate(config: SyntheticConfig, ruleset: Ruleset, model: ModelBundle) -> Evaluation:
    """Held-out metrics per scenario for the served score, the model, the rules and chance."""
    data = build_dataset(config, ruleset)
    test = slice(data.split, None)
    y = data.y[test]
    scenario = data.scenario[test]
    combined, model_scores = [], []
    decisions: dict[str, dict[Decision, int]] = {
        truth: dict.fromkeys(Decision, 0) for truth in ("legit", *SCENARIOS, "fraud")
    }
    for txn, row, label, truth in zip(
        data.transactions[test], data.X[test], y, scenario, strict=True
    ):
        features = dict(zip(data.names, row.tolist(), strict=True))
        outcome = assess(txn, features, ruleset, model.full)
        combined.append(outcome.score)
        model_scores.append(outcome.model_score)
        decisions[str(truth)][outcome.decision] += 1
        if label:
            decisions["fraud"][outcome.decision] += 1
    scores: dict[str, Vector] = {
        "combined": np.asarray(combined),
        "model": np.asarray(model_scores),
        "rules": data.rules_score[test],
        "random": np.random.default_rng(config.seed).random(len(y)),
    }
    results = []
    for name in (*SCENARIOS, "all"):
        mask = (y == 0) | (scenario == name) if name != "all" else np.ones(len(y), dtype=bool)
        positives = int(y[mask].sum())
        if positives == 0:
            continue
        results.append(
            ScenarioResult(
                scenario=name,
                positives=positives,
                negatives=int((y[mask] == 0).sum()),
                pr_auc={
                    k: float(average_precision_score(y[mask], s[mask])) for k, s in scores.items()
                },
                recall_at_fpr={k: recall_at_fpr(y[mask], s[mask]) for k, s in scores.items()},
            )
        )
    return Evaluation(results, decisions, test_rows=len(y), train_rows=data.split)
