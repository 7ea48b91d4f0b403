"""Connecting to a running mesh as the operator, from scripts and the CLI.

`bankmesh up` writes `<data_dir>/endpoints.json` with every service's
addresses and the operator's client certificate. `operator_channel("account")`
reads it and opens a channel with mutual TLS as
`spiffe://bankmesh.local/svc/operator`, which the mesh policy lets reach every
method an operator needs. A service with replicas is one channel over all of
their addresses, balanced round-robin, so a replica that is down is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from mesh.client import target_for
from mesh.runtime.errors import MeshError
from mesh.runtime.status import Endpoints, Transport, read_endpoints
from mesh.tls import channel_options

DEFAULT_DATA_DIR = Path(".bankmesh")


def operator_channel(service: str, data_dir: Path = DEFAULT_DATA_DIR) -> grpc.Channel:
    """A channel to every process of ``service``, as the operator; MeshError if none runs."""
    endpoints = read_endpoints(data_dir)
    addresses = endpoints.addresses(service)
    if not addresses:
        raise MeshError(
            f"the mesh in {data_dir} runs no {service} service "
            f"(it runs: {', '.join(sorted(endpoints.services)) or 'nothing'})",
            hint=_missing_service_hint(endpoints, data_dir),
        )
    transport = Transport.from_endpoints(endpoints.credentials)
    # Round-robin over the replicas (gRPC's default would stick to the first).
    options: list[tuple[str, object]] = [
        (
            "grpc.service_config",
            json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}),
        )
    ]
    target = target_for(addresses)
    if transport.credentials is None:
        return grpc.insecure_channel(target, options=options)
    options += channel_options(service, domain=transport.server_name_suffix)
    return grpc.secure_channel(target, transport.credentials, options=options)


def _missing_service_hint(endpoints: Endpoints, data_dir: Path) -> str:
    if not endpoints.complete:
        return "the mesh is still starting; try again once `bankmesh up` shows its table"
    return f"check `bankmesh status --data-dir {data_dir}`"
