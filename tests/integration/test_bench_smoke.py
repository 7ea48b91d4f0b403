"""`make bench` end to end, tiny: the harness runs and writes results of the promised shape.

CI never runs the real benchmark (minutes of load on a shared machine).
This runs `python -m bench --profile smoke` instead: the same launch of the
mesh, echo server, client processes, account setup, every scenario and
pgbench, at one concurrency for about a second each with a few accounts,
into a temporary results directory. It checks the shape of latest.json and
that every scenario that ran completed requests, not the numbers.

The ratio and target arithmetic is checked on its own, on made-up runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.pgbench import pgbench_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_KEYS = {"rps": float, "p50_ms": float, "p99_ms": float, "p999_ms": float, "errors": int}
GRPC_SCENARIOS = ["echo", "ledger", "hot", "payment", "risk"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "smoke", "--clients", "2", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads((out / "latest.json").read_text())


def test_the_smoke_run_writes_results_in_the_documented_shape(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    """runs/<scenario>/c<N> with the five numbers, ratios by name, rss_mb, machine, git_sha."""
    _, document = smoke
    assert {"runs", "ratios", "rss_mb", "machine", "git_sha"} <= set(document)
    assert isinstance(document["git_sha"], str) and document["git_sha"]
    assert isinstance(document["machine"], dict) and document["machine"]["cpus"]
    assert set(document["ratios"]) == set(report.RATIO_NAMES)
    for name, value in document["ratios"].items():
        assert value is None or isinstance(value, float), (name, value)
    for scenario, levels in document["runs"].items():
        assert levels, scenario
        for level, run in levels.items():
            assert level.startswith("c") and level[1:].isdigit(), (scenario, level)
            for key, kind in RUN_KEYS.items():
                assert isinstance(run[key], kind), (scenario, level, key, run[key])


def test_every_scenario_completes_requests_or_says_why_it_did_not_run(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    """Each gRPC scenario and pgbench (when installed) completed requests; the edge is
    measured or reported as not available."""
    _, document = smoke
    expected = GRPC_SCENARIOS + (["pgbench"] if pgbench_path() else [])
    for scenario in expected:
        assert scenario in document["runs"], document.get("skipped")
        for level, run in document["runs"][scenario].items():
            assert run["rps"] > 0 and run["completed"] > 0, (scenario, level, run)
    if "edge" not in document["runs"]:
        assert document["skipped"]["edge"].startswith("not available"), document["skipped"]


def test_memory_is_reported_for_every_service_process(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, document = smoke
    assert {"account", "risk", "payment", "echo"} <= set(document["rss_mb"])
    assert all(isinstance(mb, float) and mb > 0 for mb in document["rss_mb"].values())


def test_the_markdown_table_and_the_chart_are_written(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, document = smoke
    text = (out / "latest.md").read_text()
    assert document["date"] in text and "| echo |" in text and "## Ratios and targets" in text
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib (the bench extra) is not installed: no chart")
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_re_renders_from_json_and_fails_on_a_missed_target(
    smoke: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """--report-only --check reads latest.json; a ratio under its target exits 1."""
    _, document = smoke
    runs = {
        "echo": {"c64": _run(1000.0, p99=2.0)},
        "ledger": {"c64": _run(100.0, p99=50.0)},
    }
    (tmp_path / "latest.json").write_text(
        json.dumps({**document, "runs": runs, "ratios": report.ratios(runs)})
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--report-only", "--check", "--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ledger_vs_echo_c64" in done.stderr and "NO" in done.stderr


# --- the arithmetic, on made-up runs ---------------------------------------------------


def _run(rps: float, p99: float = 1.0) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "p999_ms": p99 * 2, "errors": 0}


def test_ratios_divide_the_c64_throughputs_and_the_best_ledger_by_the_best_pgbench() -> None:
    runs = {
        "echo": {"c1": _run(500.0), "c64": _run(4000.0)},
        "ledger": {"c1": _run(100.0), "c16": _run(1500.0), "c64": _run(1000.0)},
        "hot": {"c64": _run(250.0)},
        "payment": {"c64": _run(400.0)},
        "ledger_batch": {
            "c1": {**_run(20.0), "transfers_per_s": 2000.0},
            "c16": {**_run(36.0), "transfers_per_s": 3600.0},
        },
        "pgbench": {"c1": _run(300.0), "c16": _run(1200.0)},
    }
    assert report.ratios(runs) == {
        "ledger_vs_echo_c64": 0.25,
        "payment_vs_echo_c64": 0.1,
        "edge_vs_payment_c64": None,  # no edge run: null, not zero
        "hot_vs_ledger_c64": 0.25,
        "ledger_vs_pgbench": 1.25,  # best ledger (c16) over best pgbench
        "ledger_batch_vs_pgbench": 3.0,  # transfers, not requests, per second
    }


def test_a_target_of_a_scenario_not_measured_is_reported_but_does_not_fail() -> None:
    runs = {
        "echo": {"c64": _run(1000.0, p99=10.0)},
        "ledger": {"c64": _run(600.0, p99=20.0)},
        "risk": {"c16": _run(900.0, p99=12.0)},
    }
    document = {"runs": runs, "ratios": report.ratios(runs), "rss_mb": {"account": 250.0}}
    checked = {c.target.name: c for c in report.check(document)}
    assert checked["ledger_vs_echo_c64"].met is True
    assert checked["ledger p99 / echo p99 at c64"].met is True
    assert checked["risk p99 at c16"].met is False
    assert checked["account RSS"].met is False
    assert checked["edge_vs_payment_c64"].met is None
    assert [c.target.name for c in report.failed(list(checked.values()))] == [
        "risk p99 at c16",
        "account RSS",
    ]
