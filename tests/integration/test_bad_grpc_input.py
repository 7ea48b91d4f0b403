"""Bad bytes at every gRPC method: a clear error, no crash, nothing leaked.

The account service runs for real on port 0; every method of every bankmesh
service descriptor it hosts is sent garbage, a message nested past
protobuf's recursion limit, and an oversized body, through a raw channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool
from grpc_status import rpc_status

import bankmesh.account.v1.account_service_pb2  # noqa: F401 - registers the descriptors
from mesh.errors import error_info
from mesh.server import MAX_MESSAGE_BYTES
from services.account.app import SERVICE_NAME, build_account_server
from services.account.service_layer.ledger import Ledger

pytestmark = pytest.mark.integration

METHODS = [
    f"/{SERVICE_NAME}/{m.name}"
    for m in descriptor_pool.Default().FindServiceByName(SERVICE_NAME).methods
]
GARBAGE = b"\xff\xff\xff\xff\x0f\x08"  # an unterminated varint field header


def nested(depth: int) -> bytes:
    """A length-delimited field (number 1) nested `depth` times: past the recursion limit."""
    body = b""
    for _ in range(depth):
        body = b"\x0a" + _varint(len(body)) + body
    return body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.fixture
async def channel(ledger: Ledger) -> AsyncIterator[grpc.aio.Channel]:
    server, port, _ = build_account_server(ledger)
    await server.start()
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        yield channel
    await server.stop(grace=None)


async def send(channel: grpc.aio.Channel, method: str, body: bytes) -> grpc.aio.AioRpcError:
    call = channel.unary_unary(method, None, None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(body, timeout=10)
    return caught.value


@pytest.mark.parametrize("method", METHODS)
async def test_garbage_bytes_are_invalid_argument_at_every_method(
    channel: grpc.aio.Channel, method: str
) -> None:
    """Undecodable bytes: INVALID_ARGUMENT / MALFORMED_REQUEST, never INTERNAL."""
    error = await send(channel, method, GARBAGE)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_info(status) if status else None
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info is not None and info.reason == "MALFORMED_REQUEST"
    assert "Traceback" not in (error.details() or "")


@pytest.mark.parametrize("method", METHODS)
async def test_a_message_nested_too_deep_is_refused_cleanly(
    channel: grpc.aio.Channel, method: str
) -> None:
    """Nesting past protobuf's limit is a client error, not a crash of the server."""
    error = await send(channel, method, nested(200))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_an_oversized_message_is_refused_before_it_is_read(
    channel: grpc.aio.Channel,
) -> None:
    """Past the 4 MiB receive limit: RESOURCE_EXHAUSTED, and the server keeps serving."""
    error = await send(channel, METHODS[0], b"\x0a" + _varint(5 * 2**20) + b"x" * (5 * 2**20))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    again = await send(channel, METHODS[0], GARBAGE)
    assert again.code() is grpc.StatusCode.INVALID_ARGUMENT
