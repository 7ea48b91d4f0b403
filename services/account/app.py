"""Wiring of the account service: configuration in, a running gRPC server out.

Nothing happens at import time. `serve()` is what `python -m services.account`
runs; tests use `build_account_server()` directly with port 0.

Background work, each in its own task:
* the hold-expiry sweeper releases overdue holds every second (transfers also
  expire overdue holds on their own accounts before they run, so limits are
  exact even between sweeps);
* health (mesh.lifecycle) is NOT_SERVING while PostgreSQL does not answer;
* signed checkpoints of the audit log (services.common.audit.service).
"""

from __future__ import annotations

import asyncio
import logging

import grpc.aio

from bankmesh.account.v1 import account_service_pb2, account_service_pb2_grpc
from mesh import lifecycle
from mesh.config import ServiceEnvironment
from mesh.security import server_security
from mesh.server import HealthReporter, ServerSecurity, build_server
from services.account.adapters import migrations
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.entrypoints.errors import translate
from services.account.entrypoints.grpc_servicer import AccountServicer
from services.account.service_layer.ledger import Ledger
from services.account.service_layer.unit_of_work import Clock, StorageError, SystemClock
from services.common.audit.service import ServiceAudit
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


EXPIRY_INTERVAL_SECONDS = 1.0
POOL_SIZE = 20


async def serve(env: ServiceEnvironment, clock: Clock | None = None) -> None:
    engine = create_engine(env.require_database(), pool_size=POOL_SIZE)
    ledger = Ledger(lambda: SqlUnitOfWork(engine), clock or SystemClock())
    audit = ServiceAudit(engine, "account")
    server, port, health = build_account_server(
        ledger, env.listen, audit.secure(server_security(env))
    )
    await lifecycle.run_server(
        env=env,
        server=server,
        port=port,
        health=health,
        dependencies=[lifecycle.database(engine)],
        log=log,
        background=[sweep_expired_holds(ledger, EXPIRY_INTERVAL_SECONDS), *audit.background()],
        cleanup=[ledger.shutdown, audit.close, engine.dispose],
    )


def main() -> None:
    lifecycle.main("account", serve)
