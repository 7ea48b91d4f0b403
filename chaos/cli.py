"""``python -m chaos [--profile long|short] [--out DIR] [--seed N] [--keep]``.

Runs the profile (``long`` is what ``make chaos`` runs), writes
``DIR/latest.json`` and ``DIR/latest.png`` (default ``chaos/results``),
prints a summary, and exits 1 when an invariant was violated or a fault
kind was not injected as often as the profile asks.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from chaos import report
from chaos.profiles import PROFILES
from chaos.run import run

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json/png go")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    print(f"chaos: profile {profile.name}, {len(profile.faults)} faults", flush=True)
    outcome = run(profile, seed=args.seed, keep=args.keep)
    written = report.write(outcome.summary, args.out)
    print(render(outcome.summary))
    print("wrote " + ", ".join(str(path) for path in written))
    if outcome.kept:
        print(f"logs and databases kept in {outcome.run_dir}")
    problems = shortfalls(outcome.summary, Counter(f.kind for f in profile.faults))
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def shortfalls(summary: dict[str, Any], wanted: Counter[str]) -> list[str]:
    """What makes a run a failure: violations, and fault kinds injected less often than asked."""
    problems = [
        f"{count} violation(s) of {kind}"
        for kind, count in summary["violations"]["by_kind"].items()
        if count
    ]
    injected = summary["faults"]["by_kind"]
    problems += [
        f"{kind} injected {injected.get(kind, 0)} of {count} times"
        for kind, count in wanted.items()
        if injected.get(kind, 0) < count
    ]
    if summary["recovery"]["still_pending"]:
        problems.append(f"{summary['recovery']['still_pending']} payments never became final")
    return problems


def render(summary: dict[str, Any]) -> str:
    payments = summary["operations"]["payments"]
    requests = summary["operations"]["payment_requests"]
    reads = summary["operations"]["reads"]
    availability = summary["availability"]
    lines = [
        f"payments: {payments['attempted']} attempted, {payments['acknowledged']} acknowledged "
        f"({payments['acknowledged_after_faults']} only after the faults), "
        f"{payments['never_acknowledged']} never, {payments['refused']} refused",
        f"requests: {requests['attempted']} payment tries ({requests['failed']} failed), "
        f"{reads['attempted']} reads ({reads['failed']} failed, {reads['checked']} checked)",
        f"final statuses: {payments['final_status']}",
        f"faults: {summary['faults']['by_kind']}",
        f"violations: {summary['violations']['total']} {summary['violations']['by_kind']}",
    ]
    for phase in ("baseline", "during_faults", "between_and_after_faults"):
        lines.append(
            f"availability {phase}: payments {availability[phase]['payments']}, "
            f"reads {availability[phase]['reads']}"
        )
    recovery = summary["recovery"]
    per_fault = ", ".join(
        f"{f['kind']}({f['target']})={f['recovery_seconds']}" for f in recovery["per_fault"]
    )
    lines.append(f"recovery seconds: {per_fault}")
    lines.append(f"every payment final within {recovery['all_final_within_seconds']} s")
    lines.extend(summary["violations"]["examples"][:10])
    return "\n".join(lines)
