"""The model file: fitted trees as JSON, pinned by SHA-256.

The file is data only. Loading it parses JSON into `TreeEnsemble`s and runs
no code from it, unlike a pickle/joblib file, which executes whatever it
contains on load. The ruleset still pins the file's SHA-256, and `load_model`
refuses a file whose bytes do not hash to the pin *before* parsing it: the
ruleset's thresholds were chosen for one model, and a swapped or corrupted
file must not be scored with them.

Format (canonical JSON: sorted keys, no spaces, one trailing newline, so the
same model always has the same bytes and the same hash):

    {"format": "bankmesh-risk-model/1",
     "models": {"full": ENSEMBLE, "stateless": ENSEMBLE},
     "training": {... how it was made: seed, sizes, ...}}
    ENSEMBLE = {"features": [names], "baseline": float,
                "trees": [{"feature": [...], "threshold": [...], "left": [...],
                           "right": [...], "value": [...], "missing_left": [0|1, ...]}]}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from services.risk.domain.ensemble import ModelBundle, Tree, TreeEnsemble

FORMAT = "bankmesh-risk-model/1"


class ModelFileError(ValueError):
    pass


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_version(sha256: str) -> str:
    return f"hgb-{sha256[:12]}"


def dump_model(full: TreeEnsemble, stateless: TreeEnsemble, training: dict[str, Any]) -> bytes:
    document = {
        "format": FORMAT,
        "models": {"full": _ensemble_json(full), "stateless": _ensemble_json(stateless)},
        "training": training,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode()


def _ensemble_json(e: TreeEnsemble) -> dict[str, Any]:
    return {
        "features": list(e.feature_names),
        "baseline": e.baseline,
        "trees": [
            {
                "feature": list(t.feature),
                "threshold": list(t.threshold),
                "left": list(t.left),
                "right": list(t.right),
                "value": list(t.value),
                "missing_left": [int(m) for m in t.missing_left],
            }
            for t in e.trees
        ],
    }


def load_model(path: Path, expected_sha256: str | None) -> ModelBundle:
    """Read, verify against the pinned hash (when given), then parse."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelFileError(
            f"the model file {path} has SHA-256 {digest}, but the ruleset pins "
            f"{expected_sha256}: refusing to load it (retrain, or pin the new hash "
            "after reviewing the thresholds)"
        )
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a {FORMAT} file")
        models = document["models"]
        return ModelBundle(
            version=model_version(digest),
            sha256=digest,
            full=_ensemble(models["full"]),
            stateless=_ensemble(models["stateless"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is not a valid model file: {exc!r}") from exc


def _ensemble(data: dict[str, Any]) -> TreeEnsemble:
    return TreeEnsemble(
        feature_names=tuple(str(n) for n in data["features"]),
        baseline=float(data["baseline"]),
        trees=tuple(
            Tree(
                feature=tuple(int(v) for v in t["feature"]),
                threshold=tuple(float(v) for v in t["threshold"]),
                left=tuple(int(v) for v in t["left"]),
                right=tuple(int(v) for v in t["right"]),
                value=tuple(float(v) for v in t["value"]),
                missing_left=tuple(bool(v) for v in t["missing_left"]),
            )
            for t in data["trees"]
        ),
    )
