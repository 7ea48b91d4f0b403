"""``python -m bench``: one run, several measurements, ratios against baselines of the same run.

    python -m bench                 quick profile (make bench), a few minutes
    python -m bench --full          six times longer per level (make bench-full)
    python -m bench --check         also hold the results to the targets; exit 1 if one is missed
    python -m bench --report-only   re-render latest.md / latest.png (and --check) from latest.json

The run: start the mesh as ``bankmesh up`` does (bench.mesh) and the echo
server, start the client processes (bench.loadgen), open and fund the
accounts, then measure each scenario at each concurrency level while
sampling every service process's memory and CPU, run pgbench on the same
PostgreSQL, stop everything, and write ``latest.json``, ``latest.md`` and
``latest.png`` to ``--out`` (``bench/results``).

Exit status: 0 done (and every measured target met, with ``--check``),
1 a target missed, 2 the bench itself could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import report
from bench.loadgen import ClientPool, Measurement, WorkerFailed
from bench.mesh import Backends, BenchError, RunningMesh, choose_backends, scratch_data_dir
from bench.pgbench import PgbenchRun, pgbench_path, run_pgbench
from bench.procstat import Sampler
from bench.profiles import PROFILES, Profile
from bench.scenarios import ALL, PGBENCH, SCENARIOS, Context, set_up_accounts

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results"
# Tags (a payment's risk reasons) kept per measurement, most frequent first.
_KEPT_TAGS = 8

console = Console(stderr=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark the bankmesh services."
    )
    parser.add_argument("--full", action="store_true", help="the long profile (make bench-full)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), help="quick (default), full, or smoke (tests)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render latest.md and latest.png from latest.json in --out, without measuring",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)} (default: all)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=max(2, os.cpu_count() or 2),
        help="load-generator processes (default: one per core, at least 2)",
    )
    parser.add_argument("--duration", type=float, help="seconds measured per level")
    parser.add_argument("--accounts", type=int, help="accounts to open and fund")
    parser.add_argument(
        "--levels", help="comma-separated concurrency levels (default: the profile's)"
    )
    parser.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=COUNT",
        help="processes of a service, as `bankmesh up --replicas` (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the request streams")
    parser.add_argument(
        "--keep-data-dir", action="store_true", help="keep the mesh's scratch data dir (logs)"
    )
    args = parser.parse_args(argv)
    if args.full and args.profile not in (None, "full"):
        parser.error("--full and --profile disagree")
    args.profile = "full" if args.full else (args.profile or "quick")
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in ALL]
    if unknown:
        parser.error(f"unknown scenarios {', '.join(unknown)}; choose from {', '.join(ALL)}")
    args.scenarios = chosen
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    if args.levels is not None:
        try:
            args.levels = tuple(int(level) for level in args.levels.split(","))
        except ValueError:
            parser.error("--levels takes whole numbers, like 1,16,64")
        if not args.levels or min(args.levels) < 1:
            parser.error("--levels must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        document = json.loads((args.out / "latest.json").read_text())
    else:
        profile = PROFILES[args.profile].with_overrides(
            duration=args.duration, accounts=args.accounts, levels=args.levels
        )
        try:
            document = run(profile, args)
        except (BenchError, WorkerFailed, RuntimeError, OSError) as exc:
            console.print(f"[bold red]bench failed:[/] {exc}")
            raise SystemExit(2) from None
        report.write_json(document, args.out / "latest.json")
    (args.out / "latest.md").write_text(report.markdown(document))
    drew = report.chart(document, args.out / "latest.png")
    print_summary(document)
    written = ["latest.json", "latest.md"] + (["latest.png"] if drew else [])
    console.print(f"wrote {', '.join(written)} to {args.out}")
    if not drew:
        console.print("[yellow]no chart: matplotlib is not installed (pip install -e '.[bench]')")
    if args.check:
        checked = report.check(document)
        print_check(checked)
        if report.failed(checked):
            raise SystemExit(1)


# -- the run ------------------------------------------------------------------------------


def run(profile: Profile, args: argparse.Namespace) -> dict[str, Any]:
    backends = choose_backends()
    console.print(
        f"[bold]bankmesh bench[/], {profile.name} profile: concurrency "
        f"{', '.join(map(str, profile.levels))}, {profile.warmup:g}s warm-up + "
        f"{profile.duration:g}s per level, {args.clients} client processes; "
        f"{backends.database_label}, {backends.redis_label}"
    )
    started = datetime.now(UTC)
    runs: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    rss: dict[str, int] = {}
    data_dir = scratch_data_dir()
    mesh = RunningMesh(data_dir, backends, replicas=args.replicas, keep_data_dir=args.keep_data_dir)
    if args.keep_data_dir:
        console.print(f"the mesh's data directory: {data_dir} (pids in run/*.ready.json)")
    with console.status("starting the mesh (bankmesh up) and the echo server"):
        mesh.__enter__()
    try:
        with ClientPool(args.clients) as pool, _progress() as progress:
            context = Context(mesh)
            grpc_scenarios = [SCENARIOS[name] for name in args.scenarios if name in SCENARIOS]
            if any(s.needs_accounts for s in grpc_scenarios):
                task = progress.add_task(
                    f"setup: {profile.accounts} accounts", total=1.0, status=""
                )

                def setup_progress(done: int, total: int) -> None:
                    progress.update(task, completed=done / total)

                context = set_up_accounts(mesh, profile.accounts, setup_progress)
            context = dataclasses.replace(context, edge_customers=max(profile.levels))
            for seed, scenario in enumerate(grpc_scenarios, start=args.seed):
                why = scenario.unavailable(context)
                if why is not None:
                    skipped[scenario.name] = why
                    progress.console.print(f"[yellow]{scenario.name}: {why}")
                    continue
                runs[scenario.name] = _measure_scenario(
                    scenario.name,
                    scenario.workload(context),
                    profile,
                    pool,
                    mesh,
                    rss,
                    progress,
                    seed,
                    transfers_per_request=scenario.transfers_per_request,
                )
            if PGBENCH in args.scenarios:
                result = _pgbench(mesh, profile, progress)
                if isinstance(result, str):
                    skipped[PGBENCH] = result
                    progress.console.print(f"[yellow]pgbench: {result}")
                else:
                    runs[PGBENCH] = result
        machine = machine_info(mesh, backends)
        loadgen = {"processes": args.clients, "model": "closed loop, asyncio + grpc.aio"}
    finally:
        with console.status("stopping the mesh"):
            mesh.__exit__(*sys.exc_info())
        if mesh.keep_data_dir:
            console.print(f"the mesh's data directory (logs) is kept in {data_dir}")
    return {
        "runs": runs,
        "ratios": report.ratios(runs),
        "rss_mb": {name: round(value / 2**20, 1) for name, value in sorted(rss.items())},
        "machine": machine,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "profile": profile.name,
        "settings": {
            "levels": list(profile.levels),
            "warmup_s": profile.warmup,
            "duration_s": profile.duration,
            "accounts": profile.accounts,
            "pgbench_scale": profile.pgbench_scale,
            "replicas": list(args.replicas),
        },
        "loadgen": loadgen,
        "skipped": skipped,
        "scenarios": {
            name: SCENARIOS[name].measures if name in SCENARIOS else PGBENCH_MEASURES
            for name in args.scenarios
        },
        "databases": mesh.database_note,
    }


PGBENCH_MEASURES = "pgbench tpcb-like (prepared) on the same PostgreSQL: the database's ceiling"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _measure_scenario(
    name: str,
    workload: Any,
    profile: Profile,
    pool: ClientPool,
    mesh: RunningMesh,
    rss: dict[str, int],
    progress: Progress,
    seed: int,
    *,
    transfers_per_request: int = 1,
) -> dict[str, Any]:
    per_level = profile.warmup + profile.duration
    task = progress.add_task(name, total=per_level * len(profile.levels), status="")
    results: dict[str, Any] = {}
    for index, level in enumerate(profile.levels):
        began = [0.0]
        base = index * per_level

        def on_start(at: float, began: list[float] = began) -> None:
            began[0] = at

        def tick(base: float = base, began: list[float] = began) -> None:
            elapsed = time.monotonic() - began[0] if began[0] else 0.0
            progress.update(task, completed=base + min(per_level, max(0.0, elapsed)))

        progress.update(task, status=f"c{level}")
        with Sampler(mesh.pids) as sampler:
            measured = pool.run(
                workload,
                level,
                warmup=profile.warmup,
                duration=profile.duration,
                seed=seed * 100 + index,
                on_start=on_start,
                tick=tick,
            )
        service_cores, machine_cores = sampler.cores_between(*measured.window)
        for process, value in sampler.max_rss.items():
            rss[process] = max(value, rss.get(process, 0))
        results[f"c{level}"] = _run_entry(measured, service_cores, machine_cores, sampler.max_rss)
        if transfers_per_request > 1:
            results[f"c{level}"]["transfers_per_request"] = transfers_per_request
            results[f"c{level}"]["transfers_per_s"] = round(measured.rps * transfers_per_request, 1)
        progress.update(
            task,
            completed=base + per_level,
            status=f"c{level}: {measured.rps:.0f}/s, p99 {measured.percentile_ms(0.99):.1f} ms",
        )
    progress.update(task, status=_summary_status(results))
    return results


def _summary_status(results: dict[str, Any]) -> str:
    return "  ".join(f"{level} {run['rps']:.0f}/s" for level, run in results.items())


def _run_entry(
    measured: Measurement,
    service_cores: dict[str, float],
    machine_cores: float,
    max_rss: dict[str, int],
) -> dict[str, Any]:
    errors = sum(measured.errors.values())
    return {
        "rps": round(measured.rps, 1),
        "p50_ms": round(measured.percentile_ms(0.50), 3),
        "p99_ms": round(measured.percentile_ms(0.99), 3),
        "p999_ms": round(measured.percentile_ms(0.999), 3),
        "errors": errors,
        "completed": measured.completed,
        "concurrency": measured.concurrency,
        "duration_s": measured.duration,
        "error_codes": dict(measured.errors.most_common()),
        "error_samples": measured.error_samples,
        "outcomes": dict(measured.outcomes.most_common()),
        "tags": dict(measured.tags.most_common(_KEPT_TAGS)),
        "loadgen_processes": measured.processes,
        "loadgen_cpu_cores": round(measured.loadgen_cores, 2),
        "service_cpu_cores": {
            name: round(cores, 2) for name, cores in sorted(service_cores.items())
        },
        "machine_cpu_busy_cores": round(machine_cores, 2),
        "rss_mb": {name: round(value / 2**20, 1) for name, value in sorted(max_rss.items())},
    }


def _pgbench(mesh: RunningMesh, profile: Profile, progress: Progress) -> dict[str, Any] | str:
    if pgbench_path() is None:
        return "not available: pgbench is not installed (apt-get install postgresql-client)"
    server_url = mesh.database_url
    if server_url is None:
        return "not available: no PostgreSQL URL for the mesh"
    total = (profile.duration + 1.0) * len(profile.pgbench_clients)
    task = progress.add_task(PGBENCH, total=total, status="")
    finished = [0]

    def step(what: str) -> None:
        progress.update(task, status=what)
        if what.endswith("clients"):
            progress.update(task, completed=finished[0] * (profile.duration + 1.0))
            finished[0] += 1

    runs: list[PgbenchRun] = run_pgbench(
        server_url,
        profile.pgbench_clients,
        duration=profile.duration,
        scale=profile.pgbench_scale,
        progress=step,
    )
    results: dict[str, Any] = {}
    for wanted, measured in zip(profile.pgbench_clients, runs, strict=True):
        results[f"c{wanted}"] = {
            "rps": round(measured.tps, 1),
            "p50_ms": round(measured.percentile_ms(0.50), 3),
            "p99_ms": round(measured.percentile_ms(0.99), 3),
            "p999_ms": round(measured.percentile_ms(0.999), 3),
            "errors": measured.failed,
            "clients": measured.clients,
            "completed": len(measured.latencies_us),
            "duration_s": measured.duration,
            "scale": profile.pgbench_scale,
        }
    progress.update(task, completed=total, status=_summary_status(results))
    return results


# -- where and what -------------------------------------------------------------------


def machine_info(mesh: RunningMesh, backends: Backends) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "os": _os_name(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "database": backends.database_label,
        "redis": backends.redis_label,
    }
    url = mesh.database_url
    if url is not None:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute("SHOW server_version").fetchone()
            info["postgres"] = str(row[0]).split()[0] if row else "?"
        except psycopg.Error:
            info["postgres"] = "?"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.system()


def _git(*arguments: str) -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    try:
        done = subprocess.run(
            [git, *arguments], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def git_sha() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> bool:
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


# -- terminal ---------------------------------------------------------------------------


def print_summary(document: dict[str, Any]) -> None:
    table = Table(title="results (latest.md has the details)")
    for column in ("scenario", "level", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"):
        table.add_column(column, justify="left" if column in ("scenario", "level") else "right")
    for scenario, levels in document["runs"].items():
        for level, run in levels.items():
            table.add_row(
                scenario,
                level,
                f"{run['rps']:.0f}",
                f"{run['p50_ms']:.2f}",
                f"{run['p99_ms']:.2f}",
                f"{run['p999_ms']:.2f}",
                str(run["errors"]),
            )
    console.print(table)
    for scenario, why in document.get("skipped", {}).items():
        console.print(f"[yellow]{scenario}[/]: {why}")


def print_check(checked: Sequence[report.Checked]) -> None:
    table = Table(title="targets")
    for column in ("target", "bound", "measured", "met"):
        table.add_column(column)
    styles = {True: "green", False: "bold red", None: "yellow"}
    for row in checked:
        target = row.target
        table.add_row(
            target.name,
            f"{target.comparison} {target.bound:g}{target.unit}",
            report.format_value(row.measured, target.unit),
            f"[{styles[row.met]}]{report.met_label(row.met)}[/]",
        )
    console.print(table)
