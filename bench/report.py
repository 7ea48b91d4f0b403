"""The results: latest.json, latest.md, latest.png, and the targets ``--check`` holds them to.

``latest.json`` has this shape (fields beyond these are extra detail)::

    {"runs": {"<scenario>": {"c1": {"rps", "p50_ms", "p99_ms", "p999_ms", "errors"}, ...}},
     "ratios": {"ledger_vs_echo_c64", "payment_vs_echo_c64", "edge_vs_payment_c64",
                "hot_vs_ledger_c64", "ledger_vs_pgbench", "ledger_batch_vs_pgbench"},
     "rss_mb": {"<process>": float}, "machine": {...}, "git_sha": str}

A ratio whose scenarios were not both measured is null. ``ledger_vs_pgbench``
is the best ledger transfers/s at any concurrency (one transfer per request)
over the best pgbench tps; ``ledger_batch_vs_pgbench`` the same for a client
that sends ``transfers_per_request`` transfers per CreateTransfers (its runs
carry ``transfers_per_s``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Document = dict[str, Any]

RATIO_NAMES = (
    "ledger_vs_echo_c64",
    "payment_vs_echo_c64",
    "edge_vs_payment_c64",
    "hot_vs_ledger_c64",
    "ledger_vs_pgbench",
    "ledger_batch_vs_pgbench",
)
RSS_LIMIT_MB = 200.0


def _rps(runs: Mapping[str, Any], scenario: str, level: str) -> float | None:
    run = runs.get(scenario, {}).get(level)
    return float(run["rps"]) if run else None


def _best_rps(runs: Mapping[str, Any], scenario: str) -> float | None:
    return _best(runs, scenario, "rps")


def _best(runs: Mapping[str, Any], scenario: str, key: str) -> float | None:
    levels = runs.get(scenario) or {}
    return max((float(run[key]) for run in levels.values() if key in run), default=None)


def _over(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def ratios(runs: Mapping[str, Any]) -> dict[str, float | None]:
    """The five ratios of the report from ``runs``; None where a side was not measured."""
    return {
        "ledger_vs_echo_c64": _over(_rps(runs, "ledger", "c64"), _rps(runs, "echo", "c64")),
        "payment_vs_echo_c64": _over(_rps(runs, "payment", "c64"), _rps(runs, "echo", "c64")),
        "edge_vs_payment_c64": _over(_rps(runs, "edge", "c64"), _rps(runs, "payment", "c64")),
        "hot_vs_ledger_c64": _over(_rps(runs, "hot", "c64"), _rps(runs, "ledger", "c64")),
        "ledger_vs_pgbench": _over(_best_rps(runs, "ledger"), _best_rps(runs, "pgbench")),
        "ledger_batch_vs_pgbench": _over(
            _best(runs, "ledger_batch", "transfers_per_s"), _best_rps(runs, "pgbench")
        ),
    }


# -- targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    comparison: str  # ">=", "<=" or "<"
    bound: float
    measure: Callable[[Document], float | None]
    unit: str = ""

    def met(self, value: float) -> bool:
        if self.comparison == ">=":
            return value >= self.bound
        if self.comparison == "<=":
            return value <= self.bound
        return value < self.bound


@dataclass(frozen=True)
class Checked:
    target: Target
    measured: float | None

    @property
    def met(self) -> bool | None:
        """None when the target's scenarios were not measured (a skipped scenario)."""
        return None if self.measured is None else self.target.met(self.measured)


def _ratio(name: str) -> Callable[[Document], float | None]:
    def measure(document: Document) -> float | None:
        value = document["ratios"].get(name)
        return None if value is None else float(value)

    return measure


def _run_value(scenario: str, level: str, key: str) -> Callable[[Document], float | None]:
    def measure(document: Document) -> float | None:
        run = document["runs"].get(scenario, {}).get(level)
        return None if run is None else float(run[key])

    return measure


def _ledger_p99_over_echo(document: Document) -> float | None:
    ledger = _run_value("ledger", "c64", "p99_ms")(document)
    baseline = _run_value("echo", "c64", "p99_ms")(document)
    return _over(ledger, baseline)


TARGETS: tuple[Target, ...] = (
    Target("ledger_vs_echo_c64", ">=", 0.5, _ratio("ledger_vs_echo_c64")),
    Target("ledger p99 / echo p99 at c64", "<=", 3.0, _ledger_p99_over_echo),
    Target("ledger_vs_pgbench", ">=", 1.0, _ratio("ledger_vs_pgbench")),
    Target("ledger_batch_vs_pgbench", ">=", 1.0, _ratio("ledger_batch_vs_pgbench")),
    Target("hot_vs_ledger_c64", ">=", 0.5, _ratio("hot_vs_ledger_c64")),
    Target("payment_vs_echo_c64", ">=", 0.25, _ratio("payment_vs_echo_c64")),
    Target("edge_vs_payment_c64", ">=", 0.8, _ratio("edge_vs_payment_c64")),
    Target("risk p99 at c16", "<=", 10.0, _run_value("risk", "c16", "p99_ms"), " ms"),
)


def _rss(process: str) -> Callable[[Document], float | None]:
    def measure(document: Document) -> float | None:
        value = document.get("rss_mb", {}).get(process)
        return None if value is None else float(value)

    return measure


def check(document: Document) -> list[Checked]:
    """Every target against ``document``, plus one RSS target per measured process."""
    checked = [Checked(target, target.measure(document)) for target in TARGETS]
    for process in sorted(document.get("rss_mb", {})):
        target = Target(f"{process} RSS", "<", RSS_LIMIT_MB, _rss(process), " MB")
        checked.append(Checked(target, target.measure(document)))
    return checked


def failed(checked: Sequence[Checked]) -> list[Checked]:
    """The targets measured and missed (a skipped one is not a failure)."""
    return [c for c in checked if c.met is False]


def format_value(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit:
        return f"{value:.1f}{unit}"
    return f"{value:.2f}"


def met_label(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "not measured"}[met]


# -- files ------------------------------------------------------------------------------


def write_json(document: Document, path: Path) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def _errors(run: Mapping[str, Any]) -> str:
    codes = run.get("error_codes") or {}
    if not codes:
        return str(run["errors"])
    return f"{run['errors']} ({', '.join(f'{code} {n}' for code, n in codes.items())})"


def _level_label(scenario: str, level: str, run: Mapping[str, Any]) -> str:
    if scenario == "pgbench":
        return f"{run.get('clients', level[1:])} clients"
    return level


def markdown(document: Document) -> str:
    machine = document["machine"]
    lines = [
        f"# bankmesh bench: {document.get('profile', '?')} profile",
        "",
        f"- date: {document.get('date', '?')}",
        f"- machine: {machine_line(machine)}",
        f"- backends: {machine.get('database', '?')}; {machine.get('redis', '?')}",
        f"- git: {document['git_sha']}",
        f"- load generator: {document.get('loadgen', {}).get('processes', '?')} client processes "
        "(asyncio + grpc.aio), closed loop",
        "",
        "## Throughput and latency",
        "",
        "| scenario | concurrency | req/s | p50 ms | p99 ms | p99.9 ms | errors "
        "| client CPU (cores) | service CPU (cores) | machine busy (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for scenario, levels in document["runs"].items():
        for level, run in levels.items():
            services = ", ".join(
                f"{name} {cores:.2f}" for name, cores in run.get("service_cpu_cores", {}).items()
            )
            client = run.get("loadgen_cpu_cores")
            busy = run.get("machine_cpu_busy_cores")
            lines.append(
                f"| {scenario} | {_level_label(scenario, level, run)} | {run['rps']:.0f} "
                f"| {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['p999_ms']:.2f} "
                f"| {_errors(run)} | {'' if client is None else f'{client:.2f}'} | {services} "
                f"| {'' if busy is None else f'{busy:.2f}'} |"
            )
    lines += [
        "",
        "Client CPU is the load generator's processes together; service CPU is each "
        "service process's; machine busy is every core's non-idle time in the window, "
        "so it includes PostgreSQL, Redis and anything else running on the machine.",
    ]
    skipped = document.get("skipped", {})
    if skipped:
        lines += ["", "Not measured:", ""]
        lines += [f"- {scenario}: {why}" for scenario, why in skipped.items()]
    checked = check(document)
    lines += [
        "",
        "## Ratios and targets",
        "",
        "| target | bound | measured | met |",
        "|---|---|---:|---|",
    ]
    for row in checked:
        target = row.target
        lines.append(
            f"| {target.name} | {target.comparison} {target.bound:g}{target.unit} "
            f"| {format_value(row.measured, target.unit)} | {met_label(row.met)} |"
        )
    lines += ["", "## Memory", "", "| process | max RSS (MB) |", "|---|---:|"]
    lines += [f"| {name} | {mb:.1f} |" for name, mb in document.get("rss_mb", {}).items()]
    payment = document["runs"].get("payment")
    if payment:
        lines += ["", "## Payment outcomes", ""]
        for level, run in payment.items():
            mix = ", ".join(f"{k} {v}" for k, v in run.get("outcomes", {}).items())
            mix = mix or "no payment completed"
            reasons = ", ".join(f"{k} {v}" for k, v in run.get("tags", {}).items())
            lines.append(f"- {level}: {mix}" + (f" (risk reasons: {reasons})" if reasons else ""))
    lines.append("")
    return "\n".join(lines)


def machine_line(machine: Mapping[str, Any]) -> str:
    return (
        f"{machine.get('cpus', '?')} x {machine.get('cpu_model', '?')}, "
        f"{machine.get('memory_gb', '?')} GB, {machine.get('os', '?')} "
        f"(kernel {machine.get('kernel', '?')}), Python {machine.get('python', '?')}, "
        f"grpcio {machine.get('grpcio', '?')}, PostgreSQL {machine.get('postgres', '?')}"
    )


def chart(document: Document, path: Path) -> bool:
    """Throughput and p99 per scenario and concurrency as a PNG; False without matplotlib."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return False
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    patches = importlib.import_module("matplotlib.patches")
    runs: dict[str, dict[str, Any]] = document["runs"]
    scenarios = list(runs)
    slots = max((len(levels) for levels in runs.values()), default=1)
    colors = ["#8fb8de", "#3a7dc4", "#173f73", "#0b1f3a"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.5), sharex=True)
    width = 0.8 / slots
    for axis, key, ylabel in (
        (top, "rps", "requests / s (log); transfers / s for a batching client"),
        (bottom, "p99_ms", "p99 latency, ms (log)"),
    ):
        for x, scenario in enumerate(scenarios):
            for slot, (level, run) in enumerate(runs[scenario].items()):
                # A batching client's bar is its transfers, comparable to pgbench's tps.
                shown = "transfers_per_s" if key == "rps" and "transfers_per_s" in run else key
                value = float(run[shown])
                offset = x - 0.4 + width * (slot + 0.5)
                if not run.get("completed", 1):
                    # Nothing completed: no bar on a log scale, so say so where it would be.
                    axis.annotate(
                        "none\ncompleted",
                        (offset, 0),
                        xycoords=("data", "axes fraction"),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="#b00020",
                        xytext=(0, 4),
                        textcoords="offset points",
                    )
                    continue
                axis.bar(offset, value, width * 0.92, color=colors[slot % len(colors)])
                text = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
                axis.annotate(
                    text,
                    (offset, value),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
                if scenario == "pgbench" and key == "rps":
                    axis.annotate(
                        f"{run.get('clients', level[1:])} cl.",
                        (offset, 0),
                        xycoords=("data", "axes fraction"),
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        xytext=(0, 2),
                        textcoords="offset points",
                    )
        axis.set_yscale("log")
        axis.set_ylabel(ylabel)
        axis.grid(axis="y", which="major", alpha=0.3)
        bottom_limit, top_limit = axis.get_ylim()
        # Headroom above the tallest bar for its label and the legend.
        axis.set_ylim(bottom_limit, top_limit * 6)
    levels = next((list(v) for k, v in runs.items() if k != "pgbench"), [])
    handles = [
        patches.Patch(color=colors[i % len(colors)], label=f"concurrency {lvl[1:]}")
        for i, lvl in enumerate(levels)
    ]
    top.legend(
        handles=handles,
        loc="upper left",
        ncol=len(handles),
        fontsize=8,
        title="pgbench: clients as noted under its bars",
        title_fontsize=8,
    )
    bottom.set_xticks(range(len(scenarios)))
    bottom.set_xticklabels(
        [
            f"{name}\n(transfers/s)"
            if any("transfers_per_s" in run for run in runs[name].values())
            else name
            for name in scenarios
        ]
    )
    skipped = document.get("skipped", {})
    note = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    top.set_title(
        f"bankmesh bench ({document.get('profile', '?')}), {document.get('date', '')}, "
        f"git {str(document['git_sha'])[:12]}\n{machine_line(document['machine'])}",
        fontsize=9,
    )
    if note:
        figure.text(0.01, 0.005, f"not measured: {note}", fontsize=7, ha="left", va="bottom")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
