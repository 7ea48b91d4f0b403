"""The committed model is what the training code makes, and serving walks it as scikit-learn does.

Training runs once for the module (about ten seconds): the default synthetic
stream, the default ruleset's windows, the default seed, exactly what
`python -m services.risk.cli train` does.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.risk.cli import app
from services.risk.domain.ensemble import ModelBundle
from services.risk.synthetic import SCENARIOS, SyntheticConfig, generate
from services.risk.training import TrainedModel, export, train

from .support import config

SAMPLE = 500


@pytest.fixture(scope="module")
def retrained() -> TrainedModel:
    return train(SyntheticConfig(), config().ruleset)


def sample_rows(trained: TrainedModel) -> np.ndarray:
    data = trained.dataset
    rng = np.random.default_rng(0)
    rows = rng.choice(np.arange(data.split, len(data.y)), size=SAMPLE, replace=False)
    # Every fraud row of the sample window too, so the high scores are compared as well.
    fraud = np.flatnonzero(data.y[data.split :] == 1)[:100] + data.split
    return np.concatenate([rows, fraud])


def test_retraining_with_the_same_seed_reproduces_the_committed_predictions(
    retrained: TrainedModel,
) -> None:
    """Same code and seed: the committed model's predictions on held-out rows are reproduced."""
    committed: ModelBundle = config().model
    data = retrained.dataset
    rows = sample_rows(retrained)
    columns = data.stateless_columns()
    new_full = export(retrained.full, data.names)
    new_stateless = export(retrained.stateless, [data.names[c] for c in columns])
    for i in rows:
        row = data.X[i].tolist()
        assert committed.full.predict(row) == pytest.approx(new_full.predict(row), abs=1e-9)
        stateless_row = [row[c] for c in columns]
        assert committed.stateless.predict(stateless_row) == pytest.approx(
            new_stateless.predict(stateless_row), abs=1e-9
        )
    same = hashlib.sha256(retrained.content).hexdigest() == committed.sha256
    print(f"retrained model file is byte-identical to the committed one: {same}")


def test_the_exported_trees_predict_what_scikit_learn_predicts(retrained: TrainedModel) -> None:
    """The plain-Python walk of the exported trees equals predict_proba on held-out rows."""
    data = retrained.dataset
    rows = sample_rows(retrained)
    expected = retrained.full.predict_proba(data.X[rows])[:, 1]
    walked = export(retrained.full, data.names)
    got = [walked.predict(data.X[i].tolist()) for i in rows]
    assert np.allclose(got, expected, rtol=0, atol=1e-12)


def test_the_committed_model_file_is_small() -> None:
    """The model file stays well under 2 MB, so it can live in the repository."""
    from services.risk.adapters.ruleset_file import DEFAULT_RULESET, model_path

    assert model_path(config().ruleset, DEFAULT_RULESET).stat().st_size < 2_000_000


def test_the_synthetic_stream_is_deterministic_and_has_every_scenario() -> None:
    """Two runs with one seed give the same stream; another seed gives another one."""
    small = SyntheticConfig(customers=200, days=14)
    first, again = generate(small), generate(small)
    assert first == again
    assert generate(SyntheticConfig(seed=8, customers=200, days=14)) != first
    counts = Counter(item.scenario for item in first)
    assert set(SCENARIOS) <= set(counts)
    assert all(item.fraud == (item.scenario != "legit") for item in first)
    times = [item.txn.occurred_at for item in first]
    assert times == sorted(times)


def test_the_cli_trains_a_model_file_and_prints_its_hash(tmp_path: Path) -> None:
    """`train --out` writes the file whose SHA-256 it prints."""
    out = tmp_path / "model.json"
    result = CliRunner().invoke(
        app, ["train", "--out", str(out), "--customers", "150", "--days", "14"]
    )
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.output


def test_the_cli_evaluates_every_scenario_against_the_baselines() -> None:
    """`evaluate` prints a row per scenario with PR-AUC and recall for each scorer."""
    result = CliRunner().invoke(
        app, ["evaluate", "--customers", "300", "--days", "21"], env={"COLUMNS": "240"}
    )
    assert result.exit_code == 0, result.output
    for name in ("card_testing", "account_takeover", "structuring", "all", "random", "rules"):
        assert name in result.output
