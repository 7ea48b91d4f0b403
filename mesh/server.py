"""How every bankmesh service builds its gRPC server.

`build_server` returns the server, the port it bound (tests pass port 0) and
a `HealthReporter`, with the standard health service and reflection
registered and these concerns installed, as one `InterceptorChain`, in this
order (outermost first):

1. RequestIdInterceptor     x-request-id in, echoed back, in every log line
2. TracingInterceptor       a SERVER span continuing the caller's trace
3. AccessLogInterceptor     one JSON line per call, with its final code
4. LoadSheddingInterceptor  past a share of the in-flight limit, refuse by
                            priority (listings first, money movement last)
5. AuthenticationInterceptor  calling service from its mTLS certificate,
                              end user from its signed assertion
6. AuthorizationInterceptor default-deny policy (mesh/policy.toml)
7. DeadlineInterceptor      a default deadline; remaining time for outbound calls
8. MalformedRequestInterceptor  undecodable bytes -> INVALID_ARGUMENT
9. ErrorMappingInterceptor  domain errors -> google.rpc.Status; others INTERNAL

Authentication and authorization need mutual TLS (`ServerSecurity`). Without
it the server listens in plaintext with no access control: only for
development and single-service tests, and it says so loudly in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from mesh.errors import ErrorTranslator
from mesh.interceptors.access_log import AccessLogInterceptor
from mesh.interceptors.authn import AuthenticationInterceptor, PeerReader
from mesh.interceptors.authz import AuthorizationInterceptor
from mesh.interceptors.base import InterceptorChain, ServerInterceptor
from mesh.interceptors.deadline import DeadlineInterceptor
from mesh.interceptors.errors import ErrorMappingInterceptor
from mesh.interceptors.malformed import MalformedRequestInterceptor
from mesh.interceptors.request_id import RequestIdInterceptor
from mesh.interceptors.shedding import LoadSheddingInterceptor, limit_from_env
from mesh.interceptors.tracing import TracingInterceptor
from mesh.policy import Policy
from mesh.refusals import RefusalSink

log = logging.getLogger("bankmesh.server")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Registrar = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """Mutual TLS and the policy that goes with it."""

    credentials: grpc.ServerCredentials
    spiffe_id: str  # this server's own identity: the audience of end-user assertions
    policy: Policy
    read_peer: PeerReader  # auth context -> caller's SPIFFE id (mesh.tls.peer_identity)
    refusals: RefusalSink | None = None  # where refused calls are recorded (the audit log)


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
    security: ServerSecurity | None = None,
    service: str = "",
    tracer_provider: trace.TracerProvider | None = None,
    max_in_flight: int | None = None,
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    """A server with our interceptors, health and reflection, bound to `address`.

    `service` is the short name for logs and spans; by default it is read from
    the first gRPC service name ("bankmesh.risk.v1.RiskService" -> "risk").
    """
    service = service or service_names[0].split(".")[1]
    concerns: list[ServerInterceptor] = [
        RequestIdInterceptor(),
        TracingInterceptor(service, tracer_provider),
        AccessLogInterceptor(service),
        LoadSheddingInterceptor(max_in_flight or limit_from_env()),
    ]
    if security is not None:
        concerns += [
            AuthenticationInterceptor(security.spiffe_id, security.read_peer, security.refusals),
            AuthorizationInterceptor(security.policy, security.refusals),
        ]
    concerns += [
        DeadlineInterceptor(),
        MalformedRequestInterceptor(),
        ErrorMappingInterceptor(translate_errors),
    ]
    server = grpc.aio.server(
        interceptors=[InterceptorChain(concerns)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    reporter = HealthReporter(service_names)
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    reflection.enable_server_reflection(
        [*service_names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    if security is None:
        log.warning(
            "%s listens in PLAINTEXT on %s with NO authentication or policy: development only",
            service,
            address,
        )
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, security.credentials)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port, reporter
