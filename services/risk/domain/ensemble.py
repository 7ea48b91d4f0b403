"""A gradient-boosted tree ensemble, evaluated in plain Python.

Training uses scikit-learn's HistGradientBoostingClassifier (training.py);
serving does not: the fitted trees are exported as plain arrays (adapters/
model_file.py writes them as JSON) and walked here. That keeps the model
file data, not code (a pickle executes whatever it contains when loaded),
keeps scikit-learn out of the request path, and costs tens of microseconds
per transaction, less than scikit-learn's per-call overhead for one row.

The walk mirrors scikit-learn's predictor exactly: a numeric split sends a
row left when `value <= threshold` (NaN follows `missing_left`), leaves hold
values with the learning rate already applied, and the raw score is the
baseline plus every tree's leaf, summed in tree order; the probability is
the logistic function of it. A test checks the two agree on held-out rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tree:
    """Parallel node arrays; a node with feature -1 is a leaf holding `value`."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]
    missing_left: tuple[bool, ...]

    def leaf_value(self, row: Sequence[float]) -> float:
        feature, threshold = self.feature, self.threshold
        node = 0
        while (f := feature[node]) >= 0:
            x = row[f]
            # x != x only for NaN, which follows the side missing values took in training.
            go_left = self.missing_left[node] if x != x else x <= threshold[node]
            node = self.left[node] if go_left else self.right[node]
        return self.value[node]

    def check(self, n_features: int) -> None:
        n = len(self.feature)
        if not n or any(
            len(a) != n
            for a in (self.threshold, self.left, self.right, self.value, self.missing_left)
        ):
            raise ValueError("tree arrays must be non-empty and of equal length")
        for i, f in enumerate(self.feature):
            if f >= n_features or f < -1:
                raise ValueError(f"node {i} splits on feature {f} of {n_features}")
            # Children come after their parent: no cycles, so every walk ends.
            if f >= 0 and not (i < self.left[i] < n and i < self.right[i] < n):
                raise ValueError(f"node {i} has children outside the tree")


@dataclass(frozen=True, slots=True)
class TreeEnsemble:
    feature_names: tuple[str, ...]
    baseline: float
    trees: tuple[Tree, ...]

    def __post_init__(self) -> None:
        for tree in self.trees:
            tree.check(len(self.feature_names))

    def raw(self, row: Sequence[float]) -> float:
        total = self.baseline
        for tree in self.trees:
            total += tree.leaf_value(row)
        return total

    def predict(self, row: Sequence[float]) -> float:
        """Probability of fraud for one feature vector (in `feature_names` order)."""
        if len(row) != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {len(row)}")
        return _logistic(self.raw(row))


def _logistic(x: float) -> float:
    # Split by sign so exp() never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """The model file's content: the full model and the fallback's stateless one."""

    version: str  # "hgb-" + the first 12 hex digits of the file's SHA-256
    sha256: str
    full: TreeEnsemble
    stateless: TreeEnsemble
