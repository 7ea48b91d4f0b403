"""Wiring of the payment service: configuration in, a running gRPC server out.

Nothing happens at import time. `serve()` is what `python -m services.payment`
runs; tests use `build_payment_server()` directly with port 0, and the
launcher calls `migrate(url)` before starting us.

Outbound channels come from `mesh.client.MeshClient(env)`: "account" (the
ledger) and "risk". They are looked up on first use, so the service starts
even while those are not published yet; until they are, calls to them count
as unavailable (risk down: payments are held for review; ledger down:
payments stay PENDING until the recovery loop finishes them).

Background work, each in its own task:
* the recovery loop (`service_layer/recovery.py`) every `recovery_interval`
  seconds finishes payments a crash or an outage left half-way, and notices
  review holds the ledger expired;
* health (mesh.lifecycle) is NOT_SERVING while PostgreSQL or the account
  service does not answer; risk being down only degrades (payments are held).

Settings beyond `mesh.config.ServiceEnvironment`, from the environment:

| variable                                   | default        | meaning                      |
|--------------------------------------------|----------------|------------------------------|
| BANKMESH_PAYMENT_REVIEW_TIMEOUT_SECONDS    | 259200 (72 h)  | how long a review hold lasts |
| BANKMESH_PAYMENT_RECOVERY_INTERVAL_SECONDS | 2              | recovery loop period         |
| BANKMESH_PAYMENT_RECOVERY_GRACE_SECONDS    | 5              | age before a PENDING payment |
|                                            |                | counts as left behind        |
| BANKMESH_PAYMENT_CRASH_AT                  | unset          | test hook, see crash.py      |
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import grpc.aio

from bankmesh.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from mesh import lifecycle
from mesh.client import MeshClient
from mesh.config import ServiceEnvironment
from mesh.security import server_security
from mesh.server import HealthReporter, ServerSecurity, build_server
from services.common.audit.service import ServiceAudit
from services.common.database import create_engine
from services.payment.adapters import migrations
from services.payment.adapters.ledger_client import GrpcLedger
from services.payment.adapters.locks import AdvisoryLocks
from services.payment.adapters.risk_client import GrpcRisk
from services.payment.adapters.unit_of_work import SqlUnitOfWork
from services.payment.entrypoints.errors import translate
from services.payment.entrypoints.grpc_servicer import PaymentServicer
from services.payment.service_layer.crash import crash_at
from services.payment.service_layer.payments import (
    DEFAULT_REVIEW_TIMEOUT_SECONDS,
    Payments,
    Settings,
)
from services.payment.service_layer.recovery import Recovery
from services.payment.service_layer.unit_of_work import Clock, SystemClock

log = logging.getLogger("bankmesh.payment")

SERVICE_NAME = payment_service_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name

POOL_SIZE = 20
# Lock connections are held for a whole payment, so they get their own pool
# (see adapters/locks.py); its size bounds how many payments run at once.
# It has no overflow: a burst past it queues here, in the process, instead
# of opening a connection per payment in flight until PostgreSQL runs out
# of them (64 payments in flight on a server with max_connections=100 did).
LOCK_POOL_SIZE = 32


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    review_timeout_seconds: int = DEFAULT_REVIEW_TIMEOUT_SECONDS
    recovery_interval_seconds: float = 2.0
    recovery_grace_seconds: float = 5.0
    crash_at: str = ""

    @classmethod
    def from_env(cls) -> PaymentConfig:
        env = os.environ
        default = cls()
        return cls(
            review_timeout_seconds=int(
                env.get("BANKMESH_PAYMENT_REVIEW_TIMEOUT_SECONDS", default.review_timeout_seconds)
            ),
            recovery_interval_seconds=float(
                env.get(
                    "BANKMESH_PAYMENT_RECOVERY_INTERVAL_SECONDS", default.recovery_interval_seconds
                )
            ),
            recovery_grace_seconds=float(
                env.get("BANKMESH_PAYMENT_RECOVERY_GRACE_SECONDS", default.recovery_grace_seconds)
            ),
            crash_at=env.get("BANKMESH_PAYMENT_CRASH_AT", ""),
        )


def migrate(database_url: str) -> None:
    """Bring the payment schema up to date (the launcher calls this before starting us)."""
    migrations.upgrade(database_url)


def build_payment_server(
    payments: Payments, address: str = "127.0.0.1:0", security: ServerSecurity | None = None
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    def register(server: grpc.aio.Server) -> None:
        payment_service_pb2_grpc.add_PaymentServiceServicer_to_server(
            PaymentServicer(payments), server
        )

    return build_server(
        register=register,
        service_names=[SERVICE_NAME],
        translate_errors=translate,
        address=address,
        security=security,
    )


def downstreams(env: ServiceEnvironment) -> MeshClient:
    """Channels to account and risk, as the payment service.

    Payment decides who may pay (it checks the source account's owner itself)
    and then moves the money as the payment service: the ledger's transfer
    methods take no end users. Risk sees the customer, for scoring.
    """
    return MeshClient(env, on_own_behalf=frozenset({"account"}))


async def serve(
    env: ServiceEnvironment, config: PaymentConfig | None = None, clock: Clock | None = None
) -> None:
    config = config or PaymentConfig.from_env()
    clock = clock or SystemClock()
    engine = create_engine(env.require_database(), pool_size=POOL_SIZE)
    locks_engine = create_engine(env.require_database(), pool_size=LOCK_POOL_SIZE, max_overflow=0)
    mesh = downstreams(env)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    payments = Payments(
        uow,
        AdvisoryLocks(locks_engine),
        GrpcLedger(lambda: mesh.channel("account")),
        GrpcRisk(lambda: mesh.channel("risk")),
        clock,
        Settings(review_timeout_seconds=config.review_timeout_seconds),
        crash=crash_at(config.crash_at),
    )
    if config.crash_at:
        log.warning("crash hook armed: this process will kill itself at %s", config.crash_at)
    recovery = Recovery(payments, uow, clock, grace_seconds=config.recovery_grace_seconds)
    audit = ServiceAudit(engine, "payment")
    server, port, health = build_payment_server(
        payments, env.listen, audit.secure(server_security(env))
    )
    await lifecycle.run_server(
        env=env,
        server=server,
        port=port,
        health=health,
        # Without the ledger no payment can finish; without risk they are held
        # for review, which still needs the ledger. Both outages are survivable
        # for what is already accepted (recovery finishes it), but new work
        # should go to a replica that can complete it.
        dependencies=[
            lifecycle.database(engine),
            lifecycle.downstream("account", lambda: mesh.channel("account"), required=True),
            lifecycle.downstream("risk", lambda: mesh.channel("risk"), required=False),
        ],
        log=log,
        background=[recovery.run_forever(config.recovery_interval_seconds), *audit.background()],
        cleanup=[mesh.close, audit.close, engine.dispose, locks_engine.dispose],
    )


def main() -> None:
    lifecycle.main("payment", serve)
