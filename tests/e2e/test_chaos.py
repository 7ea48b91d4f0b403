"""The chaos harness's short profile: every fault kind once, against a real mesh, no violations.

A real mesh of processes with its own PostgreSQL and Redis (chaos.cluster);
about a minute and a half. ``make chaos`` runs the long profile, where every
kind fires twice (docs/reliability.md).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from chaos import report
from chaos.cli import shortfalls
from chaos.faults import KINDS
from chaos.profiles import PROFILES
from chaos.run import run


def test_the_bank_keeps_its_books_while_every_kind_of_fault_is_injected(tmp_path: Path) -> None:
    """Every fault kind fires; no money is made, lost or moved twice; every payment ends final."""
    profile = PROFILES["short"]
    outcome = run(profile)
    summary = outcome.summary
    written = report.write(summary, tmp_path)

    assert shortfalls(summary, Counter(f.kind for f in profile.faults)) == [], summary["violations"]
    assert set(summary["faults"]["by_kind"]) == set(KINDS)
    assert summary["violations"]["total"] == 0
    payments = summary["operations"]["payments"]
    assert payments["acknowledged"] > 100, payments
    assert payments["never_acknowledged"] == 0, payments
    assert summary["operations"]["reads"]["checked"] > 50
    assert summary["recovery"]["still_pending"] == 0
    assert summary["availability"]["baseline"]["payments"] == 1.0
    # The plot is the only part that needs the chaos extra (matplotlib).
    if importlib.util.find_spec("matplotlib") is not None:
        assert tmp_path / "latest.png" in written
