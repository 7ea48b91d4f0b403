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
import logging
import signal

import grpc.aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.account.v1 import account_service_pb2, account_service_pb2_grpc
from mesh.config import ServiceEnvironment
from mesh.security import server_security
from mesh.server import HealthReporter, ServerSecurity, build_server
from mesh.telemetry import configure_tracing
from services.account.adapters import migrations
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.entrypoints.errors import translate
from services.account.entrypoints.grpc_servicer import AccountServicer
from services.account.service_layer.ledger import Ledger
from services.account.service_layer.unit_of_work import Clock, StorageError, SystemClock
from services.common.database import create_engine

log = logging.getLogger("bankmesh.account")

SERVICE_NAME = account_service_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name


def migrate(database_url: str) -> None:
    """Bring the ledger schema up to date (the launcher calls this before starting us)."""
    migrations.upgrade(database_url)


def build_account_server(
    ledger: Ledger, address: str = "127.0.0.1:0", security: ServerSecurity | None = None
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    def register(server: grpc.aio.Server) -> None:
        account_service_pb2_grpc.add_AccountServiceServicer_to_server(
            AccountServicer(ledger), server
        )

    return build_server(
        service="account",
        register=register,
        service_names=[SERVICE_NAME],
        translate_errors=translate,
        address=address,
        security=security,
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


EXPIRY_INTERVAL_SECONDS = 1.0
HEALTH_INTERVAL_SECONDS = 2.0
POOL_SIZE = 20


async def serve(env: ServiceEnvironment, clock: Clock | None = None) -> None:
    configure_tracing("account")
    engine = create_engine(env.require_database(), pool_size=POOL_SIZE)
    ledger = Ledger(lambda: SqlUnitOfWork(engine), clock or SystemClock())
    server, port, health = build_account_server(ledger, env.listen, server_security(env))
    await health.set_serving(False)  # until the first database ping answers
    await server.start()
    host = env.listen.rsplit(":", 1)[0]
    tasks = [
        asyncio.create_task(sweep_expired_holds(ledger, EXPIRY_INTERVAL_SECONDS)),
        asyncio.create_task(monitor_health(engine, health, HEALTH_INTERVAL_SECONDS)),
    ]
    env.write_ready_file(f"{host}:{port}")
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


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(ServiceEnvironment.from_env("account")))
