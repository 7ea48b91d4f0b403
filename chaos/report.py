"""The results of a chaos run: ``latest.json`` and a Jepsen-style timeline, ``latest.png``.

Figures:

* operations: payment intents attempted, acknowledged (during the run, or
  only by the retry after the faults), never acknowledged, refused; every
  request on the wire; balance reads and how many were checked;
* faults injected, by kind, each with its window and target;
* invariant violations by kind (chaos.checker), which must all be 0;
* availability per phase: the share of requests answered (not an error), for
  payments and reads, in the baseline before the first fault, during fault
  windows, in the calm between and after them, and per fault kind;
* recovery per fault: seconds from the end of its window until acknowledged
  payments per second are back to half the baseline's (over a sliding
  one-second window); ``null`` if that did not happen before the next fault;
* the time every payment needed to reach a final status after the run.

The timeline buckets acknowledgements, errors and reads per half second and
shades each fault window, coloured by kind. matplotlib (the ``chaos`` extra)
draws it; without it the JSON is still written and the plot skipped.
"""

from __future__ import annotations

import importlib
import json
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.checker import Verdict
from chaos.faults import Injected
from chaos.history import Attempt, History
from chaos.profiles import Profile

BUCKET = 0.5
RECOVERED_SHARE = 0.5


def summarize(
    profile: Profile,
    history: History,
    faults: Sequence[Injected],
    verdict: Verdict,
    *,
    baseline_end: float,
    load_end: float,
    final_seconds: float,
    still_pending: int,
    startup_seconds: float,
) -> dict[str, Any]:
    intents = history.intents
    acked = [i for i in intents if i.payment_id is not None]
    pays = [a for a in history.attempts if a.what == "pay"]
    reads = [a for a in history.attempts if a.what == "read"]
    baseline = _rate(a.at for a in pays if a.ok and a.at <= baseline_end) / max(baseline_end, 1e-9)
    windows = [(f.started, f.ended) for f in faults]
    recovery = []
    for index, fault in enumerate(faults):
        until = faults[index + 1].started if index + 1 < len(faults) else load_end
        seconds = recovery_seconds(pays, fault.ended, until, baseline)
        recovery.append({**asdict(fault), "recovery_seconds": seconds})
    timeline = _timeline(history.attempts, load_end)
    return {
        "profile": profile.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "setup": {
            "accounts": profile.accounts,
            "grpc_payers": profile.grpc_payers,
            "rest_payers": profile.rest_payers,
            "grpc_readers": profile.grpc_readers,
            "rest_readers": profile.rest_readers,
            "mesh_start_seconds": round(startup_seconds, 1),
            "load_seconds": round(load_end, 1),
        },
        "operations": {
            "payments": {
                "attempted": len(intents),
                "acknowledged": len(acked),
                "acknowledged_after_faults": sum(1 for i in acked if i.resolved_late),
                "never_acknowledged": sum(
                    1 for i in intents if i.payment_id is None and not i.refused
                ),
                "refused": sum(1 for i in intents if i.refused),
                "by_channel": dict(Counter(i.channel for i in intents)),
                "resent_with_same_key": sum(len(i.replays) for i in intents),
                "acknowledged_status": dict(Counter(i.status or "" for i in acked)),
                "final_status": dict(verdict.final_statuses),
                "refusals": dict(Counter(i.refused for i in intents if i.refused)),
                "first_refusals": [
                    {"at": round(i.created, 2), "channel": i.channel, "refused": i.refused}
                    for i in intents
                    if i.refused
                ][:20],
            },
            "payment_requests": _requests(pays),
            "reads": {**_requests(reads), "checked": history.reads_checked},
        },
        "faults": {
            "by_kind": dict(Counter(f.kind for f in faults)),
            "injected": [asdict(f) for f in faults],
        },
        "violations": {
            "total": sum(verdict.violations.values()),
            "by_kind": dict(verdict.violations),
            "examples": verdict.examples,
        },
        "availability": _availability(pays, reads, faults, windows, baseline_end, load_end),
        "recovery": {
            "baseline_acknowledged_per_second": round(baseline, 2),
            "recovered_at_share_of_baseline": RECOVERED_SHARE,
            "per_fault": recovery,
            "all_final_within_seconds": round(final_seconds, 1),
            "still_pending": still_pending,
        },
        "ledger": {"payments": verdict.payments, "transfers": verdict.transfers},
        "timeline": timeline,
    }


def recovery_seconds(
    pays: Sequence[Attempt], after: float, until: float, baseline: float
) -> float | None:
    """Seconds after ``after`` until acknowledgements per second reach RECOVERED_SHARE of baseline."""
    if baseline <= 0:
        return None
    times = sorted(a.at for a in pays if a.ok and after - 1.0 <= a.at <= until)
    start = 0
    for end, at in enumerate(times):
        while times[start] < at - 1.0:
            start += 1
        if at >= after and end - start + 1 >= RECOVERED_SHARE * baseline:
            return round(max(0.0, at - after), 2)
    return None


def write(summary: dict[str, Any], directory: Path, *, plot: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "latest.json"]
    written[0].write_text(json.dumps(summary, indent=2) + "\n")
    if plot:
        png = directory / "latest.png"
        if draw(summary, png):
            written.append(png)
    return written


def draw(summary: dict[str, Any], path: Path) -> bool:
    """The timeline as a PNG; False when matplotlib is not installed."""
    # Through importlib: matplotlib is in the `chaos` extra, not in `dev`, and
    # the code must type-check (mypy --strict) without it.
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return False
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    timeline = summary["timeline"]
    t = timeline["t"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    top.plot(t, timeline["acknowledged"], color="tab:blue", lw=1.2, label="payments acknowledged/s")
    top.plot(t, timeline["reads"], color="tab:green", lw=0.8, alpha=0.7, label="balance reads/s")
    bottom.plot(t, timeline["errors"], color="tab:red", lw=1.0, label="failed requests/s")
    kinds = sorted(summary["faults"]["by_kind"])
    palette = plt.get_cmap("tab20")
    colours = {kind: palette(i % 20) for i, kind in enumerate(kinds)}
    shown: set[str] = set()
    for fault in summary["faults"]["injected"]:
        for axis in (top, bottom):
            axis.axvspan(
                fault["started"],
                max(fault["ended"], fault["started"] + 0.3),
                color=colours[fault["kind"]],
                alpha=0.35,
                lw=0,
                label=None if fault["kind"] in shown or axis is bottom else fault["kind"],
            )
        shown.add(fault["kind"])
    violations = summary["violations"]["total"]
    payments = summary["operations"]["payments"]
    top.set_title(
        f"bankmesh chaos ({summary['profile']}): {payments['attempted']} payments, "
        f"{payments['acknowledged']} acknowledged, {len(summary['faults']['injected'])} faults, "
        f"{violations} invariant violations"
    )
    top.set_ylabel("per second")
    bottom.set_ylabel("errors per second")
    bottom.set_xlabel("seconds since the workload started")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _rate(times: Iterable[float]) -> float:
    return float(sum(1 for _ in times))


def _requests(attempts: Sequence[Attempt]) -> dict[str, Any]:
    failed = [a for a in attempts if not a.ok]
    return {
        "attempted": len(attempts),
        "ok": len(attempts) - len(failed),
        "failed": len(failed),
        "errors": dict(Counter(a.outcome for a in failed).most_common()),
    }


def _share(attempts: Iterable[Attempt]) -> float | None:
    listed = list(attempts)
    if not listed:
        return None
    return round(sum(1 for a in listed if a.ok) / len(listed), 4)


def _availability(
    pays: Sequence[Attempt],
    reads: Sequence[Attempt],
    faults: Sequence[Injected],
    windows: Sequence[tuple[float, float]],
    baseline_end: float,
    load_end: float,
) -> dict[str, Any]:
    def in_fault(at: float) -> bool:
        return any(start <= at <= end for start, end in windows)

    phases = {
        "baseline": lambda a: a.at <= baseline_end,
        "during_faults": lambda a: a.at > baseline_end and in_fault(a.at),
        "between_and_after_faults": lambda a: a.at > baseline_end and not in_fault(a.at),
    }
    result: dict[str, Any] = {
        name: {"payments": _share(filter(test, pays)), "reads": _share(filter(test, reads))}
        for name, test in phases.items()
    }
    by_kind: dict[str, Any] = {}
    for kind in sorted({f.kind for f in faults}):
        spans = [(f.started, f.ended) for f in faults if f.kind == kind]

        def inside(a: Attempt, spans: list[tuple[float, float]] = spans) -> bool:
            return any(start <= a.at <= end for start, end in spans)

        by_kind[kind] = {
            "payments": _share(filter(inside, pays)),
            "reads": _share(filter(inside, reads)),
        }
    result["during_fault_kind"] = by_kind
    return result


def _timeline(attempts: Sequence[Attempt], load_end: float) -> dict[str, list[float]]:
    buckets = int(load_end / BUCKET) + 1
    acked, errors, reads = [0] * buckets, [0] * buckets, [0] * buckets
    for attempt in attempts:
        index = min(int(attempt.at / BUCKET), buckets - 1)
        if not attempt.ok:
            errors[index] += 1
        elif attempt.what == "pay":
            acked[index] += 1
        else:
            reads[index] += 1
    per_second = 1 / BUCKET
    return {
        "bucket_seconds": [BUCKET],
        "t": [round(i * BUCKET, 2) for i in range(buckets)],
        "acknowledged": [n * per_second for n in acked],
        "errors": [n * per_second for n in errors],
        "reads": [n * per_second for n in reads],
    }
