"""`InterceptorChain` runs concerns exactly as installing them one by one would.

Each recording concern notes when its hooks run; the same concerns are served
once as separate grpc interceptors and once as a chain, on real grpc.aio
servers, and must leave the same record, for unary and streaming calls alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.interceptors.base import Call, Deserializer, InterceptorChain, ServerInterceptor

pytestmark = pytest.mark.integration


class Recorder(ServerInterceptor):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def admit(self, call: Call) -> None:
        self.log.append(f"{self.name}.admit")

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        self.log.append(f"{self.name}.before({call.request!r})")
        result = await proceed()
        self.log.append(f"{self.name}.after({result!r})")
        return result


class AroundOnly(Recorder):
    admit = ServerInterceptor.admit  # this concern only wraps


class Upper(ServerInterceptor):
    """Decodes request bytes in upper case: a concern with only a deserializer."""

    def request_deserializer(self, decode: Deserializer) -> Deserializer:
        return lambda data: decode(data.upper())


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def count(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(2):
        yield request


def register(server: grpc.aio.Server) -> None:
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, request_deserializer=bytes),
        "Count": grpc.unary_stream_rpc_method_handler(count),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bankmesh.test.Chain", handlers),)
    )


async def served(interceptors: Sequence[Any], log: list[str]) -> list[list[str]]:
    server = grpc.aio.server(interceptors=interceptors)
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    records = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/bankmesh.test.Chain/Echo", None, None)
            stream = channel.unary_stream("/bankmesh.test.Chain/Count", None, None)
            for _ in range(2):  # the second call reuses the chain's cached handler
                assert await unary(b"hi") == b"HI"
                records.append(log[:])
                log.clear()
            assert [item async for item in stream(b"x")] == [b"x", b"x"]
            records.append(log[:])
    finally:
        await server.stop(grace=None)
    return records


async def test_the_chain_runs_hooks_in_the_order_of_separate_interceptors() -> None:
    def concerns(log: list[str]) -> list[ServerInterceptor]:
        return [Recorder("outer", log), Upper(), AroundOnly("middle", log), Recorder("inner", log)]

    alone_log: list[str] = []
    alone = await served(concerns(alone_log), alone_log)
    chain_log: list[str] = []
    chained = await served([InterceptorChain(concerns(chain_log))], chain_log)

    assert chained == alone
    assert chained[0] == [
        "outer.admit",
        "outer.before(b'HI')",
        "middle.before(b'HI')",
        "inner.admit",
        "inner.before(b'HI')",
        "inner.after(b'HI')",
        "middle.after(b'HI')",
        "outer.after(b'HI')",
    ]
    assert chained[2] == ["outer.admit", "inner.admit"]  # streaming: admission only
