"""MeshClient on real servers: round-robin over replicas, retries, and the circuit breaker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.client import MeshClient
from mesh.config import ServiceEnvironment
from mesh.errors import WireError
from mesh.server import build_server

pytestmark = pytest.mark.integration


class Replica:
    """A probe server that answers with its own port and can be told to fail."""

    def __init__(self) -> None:
        self.port = 0
        self.fail_next = 0
        self.calls = 0

    async def whoami(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return str(self.port).encode()

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(self.whoami)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bankmesh.test.Probe", {"WhoAmI": handler}),)
        )


def no_translation(exc: Exception) -> WireError | None:
    return None


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = []
    for _ in range(2):
        replica = Replica()
        server, replica.port, _ = build_server(
            service="probe",
            register=replica.register,
            service_names=["bankmesh.test.Probe"],
            translate_errors=no_translation,
        )
        await server.start()
        started.append((replica, server))
    yield [replica for replica, _ in started]
    for _, server in started:
        await server.stop(grace=None)


def client_for(tmp_path: Path, addresses: list[str]) -> MeshClient:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"services": {"probe": addresses}}))
    return MeshClient(ServiceEnvironment("payment", endpoints_file=endpoints, insecure_dev=True))


async def who(client: MeshClient) -> str:
    call = client.channel("probe").unary_unary("/bankmesh.test.Probe/WhoAmI", None, None)
    return (await call(b"", timeout=5)).decode()  # type: ignore[no-any-return]


async def test_calls_are_spread_round_robin_over_the_replicas(
    replicas: list[Replica], tmp_path: Path
) -> None:
    """With two replicas listed, each gets its share of twenty calls."""
    client = client_for(tmp_path, [f"127.0.0.1:{r.port}" for r in replicas])
    try:
        seen = Counter([await who(client) for _ in range(20)])
    finally:
        await client.close()
    assert set(seen) == {str(r.port) for r in replicas}
    assert min(seen.values()) >= 5


async def test_an_unavailable_answer_is_retried_transparently(
    replicas: list[Replica], tmp_path: Path
) -> None:
    """Two UNAVAILABLE answers in a row are absorbed by the retry policy."""
    replica = replicas[0]
    client = client_for(tmp_path, [f"127.0.0.1:{replica.port}"])
    replica.fail_next = 2
    try:
        assert await who(client) == str(replica.port)
    finally:
        await client.close()
    assert replica.calls == 3


async def test_a_dead_downstream_opens_the_circuit(tmp_path: Path) -> None:
    """Against an address where nothing listens, calls fail, then fail fast as circuit-open."""
    client = client_for(tmp_path, ["127.0.0.1:9"])  # discard port: nothing answers
    try:
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await who(client)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert client.breakers["probe"].state == "open"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await who(client)
        assert "circuit" in (caught.value.details() or "")
    finally:
        await client.close()
