"""How every bankmesh service builds its gRPC server.

`build_server` returns the server and the port it bound (tests pass port 0),
with the standard health service and reflection registered. The service
reports health through `HealthReporter`: NOT_SERVING until its dependencies
answer, and again whenever they stop answering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from mesh.errors import ErrorTranslator
from mesh.interceptors import ErrorMappingInterceptor

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Registrar = Callable[[grpc.aio.Server], None]


class HealthReporter:
    """Publishes SERVING / NOT_SERVING for the service names a server hosts."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self.servicer = HealthServicer()
        self._names = ["", *service_names]

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self.servicer.set(name, status)


def build_server(
    *,
    register: Registrar,
    service_names: Sequence[str],
    translate_errors: ErrorTranslator,
    address: str = "127.0.0.1:0",
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    """A server with our interceptors, health and reflection, bound to `address`."""
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor(translate_errors)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    reporter = HealthReporter(service_names)
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    reflection.enable_server_reflection(
        [*service_names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    # Plaintext, loopback only, until the mesh's mTLS arrives.
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port, reporter
