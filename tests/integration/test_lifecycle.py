"""A service's life: health follows its dependencies, and stopping drains in-flight calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import lifecycle
from mesh.config import ServiceEnvironment
from mesh.errors import WireError
from mesh.server import build_server

pytestmark = pytest.mark.integration


def no_translation(exc: Exception) -> WireError | None:
    return None


class Switch:
    """A dependency whose answer the test decides."""

    def __init__(self, up: bool = True) -> None:
        self.up = up

    async def __call__(self) -> bool:
        return self.up


async def status(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
    return response.status  # type: ignore[no-any-return]


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait (up to 5 s) until `condition` holds."""
    async with asyncio.timeout(5):
        while not await condition():  # noqa: ASYNC110 - polling a remote server, no event to wait on
            await asyncio.sleep(0.05)


async def test_health_follows_required_dependencies_and_ignores_optional_ones() -> None:
    """NOT_SERVING while PostgreSQL is down; Redis down alone keeps the service SERVING."""
    server, port, health = build_server(
        service="probe",
        register=lambda server: None,
        service_names=["bankmesh.test.Probe"],
        translate_errors=no_translation,
    )
    await server.start()
    database, cache = Switch(), Switch()
    watcher = asyncio.create_task(
        lifecycle.watch_health(
            health,
            [
                lifecycle.Dependency("PostgreSQL", database),
                lifecycle.Dependency("Redis", cache, required=False),
            ],
            logging.getLogger("test"),
            interval=0.05,
        )
    )
    serving = health_pb2.HealthCheckResponse.SERVING
    try:
        await eventually(lambda: _is(port, serving))
        cache.up = False
        await asyncio.sleep(0.2)
        assert await status(port) == serving
        database.up = False
        await eventually(lambda: _is(port, health_pb2.HealthCheckResponse.NOT_SERVING))
        database.up = True
        await eventually(lambda: _is(port, serving))
    finally:
        watcher.cancel()
        await server.stop(grace=None)


async def _is(port: int, expected: int) -> bool:
    return await status(port) == expected


async def test_stopping_finishes_calls_in_flight_and_refuses_new_ones(
    tmp_path: Any,
) -> None:
    """A slow call started before the stop completes; health turns NOT_SERVING first."""
    started = asyncio.Event()

    async def slow(request: bytes, context: Any) -> bytes:
        started.set()
        await asyncio.sleep(0.5)
        return b"done"

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(slow)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bankmesh.test.Probe", {"Slow": handler}),)
        )

    server, port, health = build_server(
        service="probe",
        register=register,
        service_names=["bankmesh.test.Probe"],
        translate_errors=no_translation,
    )
    stop = asyncio.Event()
    cleaned: list[str] = []

    async def cleanup() -> None:
        cleaned.append("engine disposed")

    running = asyncio.create_task(
        lifecycle.run_server(
            env=ServiceEnvironment("probe", ready_file=tmp_path / "ready.json"),
            server=server,
            port=port,
            health=health,
            dependencies=[],
            log=logging.getLogger("test"),
            cleanup=[cleanup],
            stop=stop,
        )
    )
    await eventually(lambda: _exists(tmp_path / "ready.json"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/bankmesh.test.Probe/Slow", None, None)(b"", timeout=5)
        await started.wait()
        stop.set()
        assert await call == b"done"
    await asyncio.wait_for(running, 10)
    assert cleaned == ["engine disposed"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/bankmesh.test.Probe/Slow", None, None)(b"", timeout=1)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def _exists(path: Any) -> bool:
    return bool(path.exists())
