"""Connecting to a running mesh as the operator, from scripts and the CLI.

`bankmesh up` writes `<data_dir>/endpoints.json` with every service's address
and the operator's client certificate. `operator_channel("account")` reads it
and opens a channel with mutual TLS as `spiffe://bankmesh.local/svc/operator`,
which the mesh policy lets reach every method an operator needs.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from mesh.runtime.errors import MeshError
from mesh.runtime.status import Transport, read_endpoints
from mesh.tls import channel_options

DEFAULT_DATA_DIR = Path(".bankmesh")


def operator_channel(service: str, data_dir: Path = DEFAULT_DATA_DIR) -> grpc.Channel:
    endpoints = read_endpoints(data_dir)
    address = endpoints.services.get(service)
    if address is None:
        raise MeshError(
            f"the mesh in {data_dir} runs no {service} service "
            f"(it runs: {', '.join(sorted(endpoints.services)) or 'nothing'})",
            hint="check `bankmesh status`",
        )
    transport = Transport.from_endpoints(endpoints.credentials)
    if transport.credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(
        address,
        transport.credentials,
        options=channel_options(service, domain=transport.server_name_suffix),
    )
