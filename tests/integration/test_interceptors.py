"""The server interceptor chain on a real grpc.aio server: ids, logs, deadlines, errors.

A small test service (`/bankmesh.test.Probe/...`) is registered through
`build_server` like any bankmesh service, so it gets the same interceptors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_status import rpc_status

from mesh.errors import WireError, error_info
from mesh.interceptors.deadline import remaining
from mesh.server import build_server

pytestmark = pytest.mark.integration


class Boom(Exception):
    """An error the service's translator does not know."""


class Refused(Exception):
    """An error the translator maps to a business refusal."""


def translate(exc: Exception) -> WireError | None:
    if isinstance(exc, Refused):
        return WireError(grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "no money")
    return None


async def deadline_left(request: bytes, context: Any) -> bytes:
    return f"{remaining():.3f}".encode()


async def boom(request: bytes, context: Any) -> bytes:
    raise Boom("password=hunter2 at /srv/secret.py line 3")


async def refuse(request: bytes, context: Any) -> bytes:
    raise Refused


def register(server: grpc.aio.Server) -> None:
    handlers = {
        "DeadlineLeft": grpc.unary_unary_rpc_method_handler(deadline_left),
        "Boom": grpc.unary_unary_rpc_method_handler(boom),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bankmesh.test.Probe", handlers),)
    )


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server, port, _ = build_server(
        service="probe",
        register=register,
        service_names=["bankmesh.test.Probe"],
        translate_errors=translate,
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(grace=None)


def method(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(f"/bankmesh.test.Probe/{name}", None, None)


async def test_the_callers_request_id_is_echoed_and_a_missing_one_is_minted(
    channel: grpc.aio.Channel,
) -> None:
    """x-request-id comes back as sent; without one the server makes one up."""
    call = method(channel, "DeadlineLeft")(b"", metadata=(("x-request-id", "abc-123"),))
    assert dict(await call.trailing_metadata())["x-request-id"] == "abc-123"
    call = method(channel, "DeadlineLeft")(b"")
    minted = dict(await call.trailing_metadata())["x-request-id"]
    assert len(minted) == 32


async def test_a_hostile_request_id_is_replaced(channel: grpc.aio.Channel) -> None:
    """An id that could forge log fields (quotes, braces, spaces) is not propagated."""
    hostile = 'x", "user": "admin'
    call = method(channel, "DeadlineLeft")(b"", metadata=(("x-request-id", hostile),))
    echoed = dict(await call.trailing_metadata())["x-request-id"]
    assert echoed != hostile
    assert len(echoed) == 32


async def test_a_call_without_a_deadline_gets_the_default(channel: grpc.aio.Channel) -> None:
    """No deadline from the client still bounds the work (10 s by default)."""
    left = float(await method(channel, "DeadlineLeft")(b""))
    assert 9.0 < left <= 10.0


async def test_the_callers_deadline_is_what_outbound_calls_inherit(
    channel: grpc.aio.Channel,
) -> None:
    """With a 1.5 s deadline, the handler sees at most 1.5 s left for its own calls."""
    left = float(await method(channel, "DeadlineLeft")(b"", timeout=1.5))
    # grpc encodes the timeout rounded up on the wire, hence the small slack.
    assert 0.5 < left <= 1.6


async def test_an_unexpected_error_is_internal_with_an_incident_and_no_internals(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """The client learns only an incident id; the log has the stack trace under that id."""
    with (
        caplog.at_level(logging.ERROR, logger="bankmesh.errors"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await method(channel, "Boom")(b"")
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert "hunter2" not in details and "secret.py" not in details
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    info = error_info(status) if status else None
    assert info is not None
    incident = info.metadata["incident"]
    assert any(incident in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_business_refusal_keeps_its_reason_and_code(channel: grpc.aio.Channel) -> None:
    """A translated domain error reaches the client as its code, reason and request id."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await method(channel, "Refuse")(b"", metadata=(("x-request-id", "req-7"),))
    trailers: Any = caught.value.trailing_metadata()
    assert ("x-request-id", "req-7") in tuple(trailers)
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    info = error_info(status) if status else None
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "INSUFFICIENT_FUNDS"


async def test_each_call_writes_one_json_access_log_line(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """The access log says method, final code and request id, as JSON, once per call."""
    with (
        caplog.at_level(logging.INFO, logger="bankmesh.access"),
        pytest.raises(grpc.aio.AioRpcError),
    ):
        await method(channel, "Refuse")(b"", metadata=(("x-request-id", "req-9"),))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bankmesh.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line["method"], line["code"], line["request_id"]) == (
        "/bankmesh.test.Probe/Refuse",
        "FAILED_PRECONDITION",
        "req-9",
    )
    assert line["ms"] >= 0


async def test_a_saturated_server_sheds_listings_but_still_takes_payments() -> None:
    """With one slot of two busy, a listing gets RESOURCE_EXHAUSTED + retry-after; a payment runs."""
    release = asyncio.Event()

    async def slow(request: bytes, context: Any) -> bytes:
        await release.wait()
        return b"slow"

    async def quick(request: bytes, context: Any) -> bytes:
        return b"quick"

    def register_busy(server: grpc.aio.Server) -> None:
        handlers = {
            "Hold": grpc.unary_unary_rpc_method_handler(slow),
            "ListStatements": grpc.unary_unary_rpc_method_handler(quick),
            "CreatePayment": grpc.unary_unary_rpc_method_handler(quick),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bankmesh.test.Probe", handlers),)
        )

    server, port, _ = build_server(
        service="probe",
        register=register_busy,
        service_names=["bankmesh.test.Probe"],
        translate_errors=translate,
        max_in_flight=2,
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            busy = asyncio.ensure_future(method(channel, "Hold")(b"", timeout=5))
            await asyncio.sleep(0.2)
            with pytest.raises(grpc.aio.AioRpcError) as shed:
                await method(channel, "ListStatements")(b"", timeout=5)
            assert await method(channel, "CreatePayment")(b"", timeout=5) == b"quick"
            release.set()
            assert await busy == b"slow"
    finally:
        await server.stop(grace=None)
    assert shed.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers: Any = shed.value.trailing_metadata()
    assert ("retry-after", "1") in tuple(trailers)
