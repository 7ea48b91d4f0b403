"""``bankmesh status``: where the services are and whether they serve.

Reads ``<data_dir>/endpoints.json`` (written by the supervisor once every
service is ready, removed on a clean stop) and asks each service the standard
gRPC health question (grpc.health.v1.Health/Check for the empty service name,
i.e. the server as a whole). Every service registers that servicer, so no
service-specific client is needed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.runtime.errors import MeshError


@dataclass(frozen=True)
class Endpoints:
    """The contents of endpoints.json."""

    services: dict[str, str]
    database: str | None = None
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    address: str
    status: str  # SERVING, NOT_SERVING, ..., or UNREACHABLE / TIMEOUT / NO_HEALTH_SERVICE
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == "SERVING"


def read_endpoints(data_dir: Path) -> Endpoints:
    """Parse ``data_dir/endpoints.json``; MeshError when no mesh is running there."""
    path = Path(data_dir).expanduser() / "endpoints.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise MeshError(
            f"no running mesh in {data_dir} ({path} does not exist)",
            hint=f"start one with `bankmesh up --data-dir {data_dir}`",
        ) from None
    except json.JSONDecodeError as exc:
        raise MeshError(
            f"{path} is not valid JSON: {exc}",
            hint="restart the mesh with `bankmesh up`; it rewrites the file",
        ) from exc
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        raise MeshError(f"{path} has no services map", hint="restart the mesh with `bankmesh up`")
    return Endpoints(
        services={str(k): str(v) for k, v in services.items()},
        database=document.get("database"),
        credentials=document.get("credentials") or {},
    )


def check_health(name: str, address: str, *, timeout: float = 2.0) -> ServiceHealth:
    """Ask the server at ``address`` for its overall gRPC health."""
    # Plain-text for now: once the mesh uses mTLS, the client certificate
    # comes from endpoints.json's credentials map.
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            status = {
                grpc.StatusCode.UNAVAILABLE: "UNREACHABLE",
                grpc.StatusCode.DEADLINE_EXCEEDED: "TIMEOUT",
                grpc.StatusCode.UNIMPLEMENTED: "NO_HEALTH_SERVICE",
            }.get(code, code.name)
            detail = exc.details()
            return ServiceHealth(name, address, status, detail or "")
    status_name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return ServiceHealth(name, address, status_name)


def check_all(endpoints: Endpoints, *, timeout: float = 2.0) -> list[ServiceHealth]:
    return [
        check_health(name, address, timeout=timeout)
        for name, address in sorted(endpoints.services.items())
    ]
