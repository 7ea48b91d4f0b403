"""One chaos run, start to finish.

1. Start the mesh (chaos.cluster) in a scratch directory: own PostgreSQL and
   Redis, certificates, every service a process, every hop a proxy.
2. Open the bank (chaos.workload) and start the clients: payers over gRPC and
   REST, readers over both.
3. Baseline, then the profile's faults one after another (chaos.faults), then
   a calm stretch; the clients run throughout.
4. Stop the clients; retry every payment never acknowledged, with its key;
   wait (bounded) until every payment has a final status; read the balances
   once more.
5. Check (chaos.checker) and report (chaos.report).

The scratch directory (logs of every process, the databases) is removed
after a run with no violations, and kept otherwise, so the evidence stays.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos import checker, report
from chaos.cluster import ChaosMesh
from chaos.faults import Scheduler
from chaos.history import History
from chaos.profiles import Profile
from chaos.workload import Bank


@dataclass
class Outcome:
    summary: dict[str, Any]
    run_dir: Path
    kept: bool


def run(profile: Profile, *, seed: int = 1, keep: bool = False) -> Outcome:
    run_dir = Path(tempfile.mkdtemp(prefix="bankmesh-chaos-"))
    mesh = ChaosMesh(run_dir)
    began = time.monotonic()
    kept = True
    try:
        mesh.start()
        startup = time.monotonic() - began
        summary = asyncio.run(_exercise(mesh, profile, seed, startup))
        kept = keep or summary["violations"]["total"] > 0
        summary["run_dir"] = str(run_dir) if kept else None
        return Outcome(summary, run_dir, kept)
    finally:
        mesh.stop()
        if not kept:
            shutil.rmtree(run_dir, ignore_errors=True)


async def _exercise(mesh: ChaosMesh, profile: Profile, seed: int, startup: float) -> dict[str, Any]:
    history = History()
    bank = Bank(mesh, history, accounts=profile.accounts, funding=profile.funding)
    await bank.open()
    history = bank.history = History()  # the clock starts with the load, not the setup
    scheduler = Scheduler(mesh, history, list(profile.faults), profile.gap)
    stop = asyncio.Event()
    rng = random.Random(seed)  # noqa: S311 - the workload's choices, not secrets
    clients = [
        bank.pay_forever(
            channel,
            index,
            stop,
            random.Random(rng.random()),  # noqa: S311 - as above
            budget=profile.intent_budget,
            duplicate_rate=profile.duplicate_rate,
            max_intents=profile.max_intents,
        )
        for channel, count in (("grpc", profile.grpc_payers), ("rest", profile.rest_payers))
        for index in range(count)
    ]
    clients += [
        bank.read_forever(channel, stop, profile.read_pause)
        for channel, count in (("grpc", profile.grpc_readers), ("rest", profile.rest_readers))
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(client) for client in clients]
    try:
        await asyncio.sleep(profile.baseline)
        baseline_end = history.now()
        await scheduler.run(stop)
        await asyncio.sleep(profile.calm)
        load_end = history.now()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    await bank.settle(budget=profile.settle_budget)
    final_seconds, still_pending = await asyncio.to_thread(
        checker.wait_final, mesh.database_urls["payment"], profile.final_within
    )
    # One last read, over both channels, of the settled books.
    for channel in ("grpc", "rest"):
        await _read_once(bank, channel)
    await bank.close()
    verdict = await asyncio.to_thread(
        checker.check,
        history,
        mesh.database_urls["payment"],
        mesh.database_urls["account"],
        account_ids=bank.account_ids,
        funding_ids=bank.funding_ids,
        settlement_id=bank.settlement_id,
        funding=profile.funding,
    )
    return report.summarize(
        profile,
        history,
        scheduler.injected,
        verdict,
        baseline_end=baseline_end,
        load_end=load_end,
        final_seconds=final_seconds,
        still_pending=still_pending,
        startup_seconds=startup,
    )


async def _read_once(bank: Bank, channel: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await bank.read_once(channel):
        if time.monotonic() > deadline:
            bank.history.violate("final_read_failed", f"{channel}: no read of the settled books")
            return
        await asyncio.sleep(0.5)
