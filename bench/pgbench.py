"""PostgreSQL's own benchmark on the server the mesh uses: the database's ceiling.

``pgbench`` (its built-in tpcb-like script, five statements in a
transaction, prepared) on a scratch database ``bench_pgbench`` initialised
at a small scale, once per client count, each for the profile's duration;
``-l`` logs every transaction's latency so the report has the same
percentiles as the gRPC scenarios. The scratch database is dropped at the
end. Client counts are capped at the connection slots the server has free,
since the idle mesh holds some of them; the result records the count used.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from mesh.runtime.postgres import with_database

DATABASE = "bench_pgbench"
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
# Slots left for everyone else: superuser_reserved_connections is 3 by default.
_SPARE_CONNECTIONS = 5


@dataclass
class PgbenchRun:
    clients: int
    tps: float
    latencies_us: list[int]
    failed: int
    duration: float

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_us:
            return 0.0
        ordered = sorted(self.latencies_us)
        return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered)))) - 1] / 1000.0


def pgbench_path() -> str | None:
    return shutil.which("pgbench")


def free_connections(server_url: str) -> int:
    with psycopg.connect(server_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
        ).fetchone()
    assert row is not None
    return int(row[0]) - _SPARE_CONNECTIONS


def run_pgbench(
    server_url: str,
    clients: Sequence[int],
    *,
    duration: float,
    scale: int,
    progress: Callable[[str], None] = lambda _: None,
) -> list[PgbenchRun]:
    """Initialise ``bench_pgbench`` at ``scale``, run at each client count, drop it."""
    binary = pgbench_path()
    if binary is None:
        raise FileNotFoundError("pgbench is not installed")
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = with_database(server_url, DATABASE)
    try:
        progress(f"initialising scale {scale}")
        _checked([binary, "--initialize", "--quiet", f"--scale={scale}", url])
        runs = []
        for wanted in clients:
            count = max(1, min(wanted, free_connections(server_url)))
            progress(f"{count} clients")
            runs.append(_run(binary, url, count, duration))
        return runs
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
            )


def _run(binary: str, url: str, clients: int, duration: float) -> PgbenchRun:
    seconds = max(1, round(duration))
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as logs:
        output = _checked(
            [
                binary,
                f"--client={clients}",
                f"--jobs={min(clients, 2)}",
                f"--time={seconds}",
                "--protocol=prepared",
                "--log",
                f"--log-prefix={Path(logs) / 'tx'}",
                url,
            ]
        )
        latencies: list[int] = []
        failed = 0
        for log in Path(logs).iterdir():
            for line in log.read_text().splitlines():
                fields = line.split()
                # client, transaction, latency (us) or "failed"/"skipped", script, epoch, us
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
                else:
                    failed += 1
    found = _TPS.search(output)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps:\n{output}")
    return PgbenchRun(clients, float(found.group(1)), latencies, failed, float(seconds))


def _checked(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout + done.stderr
