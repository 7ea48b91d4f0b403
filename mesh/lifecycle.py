"""The life of a service process, the same for every service.

A service's `serve(env)` builds its parts and hands them to `run_server`,
which starts the server, publishes health from the service's dependencies,
writes the ready file for the launcher, and on SIGTERM/SIGINT drains:
NOT_SERVING first (so balancers stop sending), then up to `grace` seconds for
in-flight calls, then the background tasks and the clean-ups in order.

Health is SERVING only while every *required* dependency answers; an
optional one (Redis for risk, which has a fallback) is logged when it goes
and comes back, without taking the service out of rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.config import ServiceEnvironment
from mesh.server import HealthReporter
from mesh.telemetry import configure_tracing

HEALTH_INTERVAL_SECONDS = 2.0
DRAIN_GRACE_SECONDS = 5.0

Check = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str
    check: Check
    required: bool = True


def database(engine: AsyncEngine) -> Dependency:
    async def ping() -> bool:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    return Dependency("PostgreSQL", ping)


def downstream(
    service: str, channel: Callable[[], grpc.aio.Channel], *, required: bool
) -> Dependency:
    """Another mesh service, asked the standard health question."""

    async def ping() -> bool:
        try:
            response = await health_pb2_grpc.HealthStub(channel()).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except (grpc.aio.AioRpcError, LookupError):
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    return Dependency(f"{service} service", ping, required)


async def watch_health(
    health: HealthReporter,
    dependencies: Sequence[Dependency],
    log: logging.Logger,
    interval: float = HEALTH_INTERVAL_SECONDS,
) -> None:
    serving: bool | None = None
    up: dict[str, bool] = {}
    while True:
        results = await asyncio.gather(*(d.check() for d in dependencies))
        for dependency, ok in zip(dependencies, results, strict=True):
            if up.get(dependency.name) != ok:
                up[dependency.name] = ok
                if ok:
                    log.info("%s reachable", dependency.name)
                else:
                    log.warning(
                        "%s unreachable%s",
                        dependency.name,
                        "" if dependency.required else " (degraded: the fallback applies)",
                    )
        now_serving = all(ok for d, ok in zip(dependencies, results, strict=True) if d.required)
        if now_serving != serving:
            serving = now_serving
            await health.set_serving(serving)
            log.info("health: %s", "SERVING" if serving else "NOT_SERVING")
        await asyncio.sleep(interval)


async def run_server(
    *,
    env: ServiceEnvironment,
    server: grpc.aio.Server,
    port: int,
    health: HealthReporter,
    dependencies: Sequence[Dependency],
    log: logging.Logger,
    background: Sequence[Coroutine[Any, Any, None]] = (),
    cleanup: Sequence[Callable[[], Awaitable[object]]] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until `stop` is set), then drain and clean up."""
    await health.set_serving(False)  # until the dependencies have answered once
    await server.start()
    tasks = [
        asyncio.create_task(watch_health(health, dependencies, log)),
        *(asyncio.create_task(job) for job in background),
    ]
    host = env.listen.rsplit(":", 1)[0]
    env.write_ready_file(f"{host}:{port}")
    log.info("%s service listening on %s:%d", env.name, host, port)

    signals = (signal.SIGTERM, signal.SIGINT)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

    log.info("%s service draining in-flight calls", env.name)
    await health.set_serving(False)
    await server.stop(grace=DRAIN_GRACE_SECONDS)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for close in cleanup:
        await close()


def main(name: str, serve: Callable[[ServiceEnvironment], Coroutine[Any, Any, None]]) -> None:
    """The body of `python -m services.<name>`."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    configure_tracing(name)
    asyncio.run(serve(ServiceEnvironment.from_env(name)))
