"""Calling the services: one generic unary call per route, over the mesh's channels.

The edge has no stubs per service: `GrpcUpstream` calls `route.grpc_path`
with the request message it was given and decodes the route's output type,
on the channel `MeshClient` keeps for `route.service`. That channel's
interceptors (mesh.interceptors.outbound) add the request id, the trace
context, the end user re-signed for the callee, and the remaining deadline.

Failures come back as `UpstreamError(status)`, the google.rpc.Status the
service sent (or one built from the code), for mesh.edge.errors to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import tokens
from mesh.edge.errors import status_from_rpc_error
from mesh.edge.routes import Route
from mesh.edge.transcode import message_class
from mesh.errors import WireError

# The client's address as the edge saw it, for identity's security events.
CLIENT_IP_HEADER = tokens.CLIENT_IP_HEADER


class UpstreamError(Exception):
    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


class Upstream(Protocol):
    async def __call__(
        self,
        route: Route,
        request: Message,
        *,
        deadline_seconds: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Message:
        """The service's response, or UpstreamError."""
        ...


def unavailable(service: str, why: str) -> UpstreamError:
    return UpstreamError(
        WireError(
            grpc.StatusCode.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            f"the {service} service is unavailable ({why}); nothing was changed, retry later",
        ).to_status()
    )


class GrpcUpstream:
    def __init__(self, channel: Callable[[str], grpc.aio.Channel]) -> None:
        self._channel = channel

    async def __call__(
        self,
        route: Route,
        request: Message,
        *,
        deadline_seconds: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Message:
        try:
            channel = self._channel(route.service)
        except LookupError:
            raise unavailable(route.service, "not published in endpoints.json") from None
        call = channel.unary_unary(
            route.grpc_path,
            request_serializer=_serialize,
            response_deserializer=message_class(route.output).FromString,
        )
        try:
            response: Message = await call(
                request, timeout=deadline_seconds, metadata=tuple(metadata)
            )
        except grpc.aio.AioRpcError as error:
            raise UpstreamError(status_from_rpc_error(error)) from None
        return response


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def health_of(channel: grpc.aio.Channel, wait_seconds: float = 1.0) -> str:
    """SERVING, NOT_SERVING, ... as grpc.health says; UNREACHABLE when it cannot."""
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=wait_seconds
        )
    except grpc.aio.AioRpcError as error:
        return f"UNREACHABLE ({error.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
