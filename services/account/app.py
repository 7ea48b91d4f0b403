"""Wiring of the account service: configuration in, a running gRPC server out.

Nothing happens at import time. `serve()` is what `python -m services.account`
runs; tests use `build_account_server()` directly with port 0.

Background work, each in its own task:
* the hold-expiry sweeper releases overdue holds every `expiry_interval` seconds
  (transfers also expire overdue holds on their own accounts before they run,
  so limits are exact even between sweeps);
* the health monitor pings PostgreSQL and reports NOT_SERVING while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.account.v1 import account_service_pb2, account_service_pb2_grpc
from mesh.server import HealthReporter, build_server
from services.account.adapters import migrations
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.entrypoints.errors import translate
from services.account.entrypoints.grpc_servicer import AccountServicer
from services.account.service_layer.ledger import Ledger
from services.account.service_layer.unit_of_work import Clock, StorageError, SystemClock
from services.common.database import create_engine

log = logging.getLogger("bankmesh.account")

SERVICE_NAME = account_service_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    listen: str = "127.0.0.1:0"
    ready_file: Path | None = None
    expiry_interval: float = 1.0
    health_interval: float = 2.0
    pool_size: int = 20

    @classmethod
    def from_env(cls) -> Config:
        url = os.environ.get("BANKMESH_DATABASE_URL") or os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit(
                "account service: set BANKMESH_DATABASE_URL (or run it through `bankmesh up`)"
            )
        ready = os.environ.get("BANKMESH_READY_FILE")
        return cls(
            database_url=url,
            listen=os.environ.get("BANKMESH_LISTEN", "127.0.0.1:0"),
            ready_file=Path(ready) if ready else None,
        )


def migrate(database_url: str) -> None:
    """Bring the ledger schema up to date (the launcher calls this before starting us)."""
    migrations.upgrade(database_url)


def build_account_server(
    ledger: Ledger, address: str = "127.0.0.1:0"
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    def register(server: grpc.aio.Server) -> None:
        account_service_pb2_grpc.add_AccountServiceServicer_to_server(
            AccountServicer(ledger), server
        )

    return build_server(
        register=register,
        service_names=[SERVICE_NAME],
        translate_errors=translate,
        address=address,
    )


async def sweep_expired_holds(ledger: Ledger, interval: float) -> None:
    while True:
        try:
            while await ledger.expire_due_holds() > 0:
                pass  # a full page: there may be more due right now
        except StorageError:
            log.warning("hold expiry skipped: the ledger database is unavailable")
        await asyncio.sleep(interval)


async def monitor_health(engine: AsyncEngine, health: HealthReporter, interval: float) -> None:
    serving: bool | None = None
    while True:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            now_serving = True
        except Exception:
            now_serving = False
        if now_serving != serving:
            serving = now_serving
            await health.set_serving(serving)
            log.info("health: %s", "SERVING" if serving else "NOT_SERVING (database unreachable)")
        await asyncio.sleep(interval)


async def serve(config: Config, clock: Clock | None = None) -> None:
    engine = create_engine(config.database_url, pool_size=config.pool_size)
    ledger = Ledger(lambda: SqlUnitOfWork(engine), clock or SystemClock())
    server, port, health = build_account_server(ledger, config.listen)
    await health.set_serving(False)  # until the first database ping answers
    await server.start()
    host = config.listen.rsplit(":", 1)[0]
    tasks = [
        asyncio.create_task(sweep_expired_holds(ledger, config.expiry_interval)),
        asyncio.create_task(monitor_health(engine, health, config.health_interval)),
    ]
    if config.ready_file is not None:
        _write_ready_file(config.ready_file, f"{host}:{port}")
    log.info("account service listening on %s:%d", host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("account service draining in-flight calls")
    await health.set_serving(False)
    await server.stop(grace=5)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await engine.dispose()


def _write_ready_file(path: Path, address: str) -> None:
    # Written atomically: the launcher polls for it and must never read half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"service": "account", "address": address, "pid": os.getpid()}))
    tmp.replace(path)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(Config.from_env()))
