"""A mesh of identities for tests: one CA, a certificate per service, channels as any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from mesh import pki
from mesh.config import ServiceEnvironment
from mesh.interceptors.outbound import PropagateEndUser
from mesh.security import identity_signer, server_security
from mesh.server import ServerSecurity
from mesh.tls import channel_credentials, channel_options

SERVICES = ("account", "payment", "risk", "identity", "edge", "operator")


class TestMesh:
    """Identities under `pki_dir`; `security(...)` for servers, `channel(...)` for clients."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, pki_dir: Path) -> None:
        self.pki_dir = pki_dir
        pki.issue_mesh_identities(pki_dir, SERVICES)

    def identity_dir(self, service: str) -> Path:
        return pki.identity_directory(self.pki_dir, service)

    def env(self, service: str) -> ServiceEnvironment:
        return ServiceEnvironment(name=service, identity_dir=self.identity_dir(service))

    def security(self, service: str) -> ServerSecurity:
        security = server_security(self.env(service))
        assert security is not None
        return security

    def channel(self, caller: str, target: str, port: int) -> grpc.aio.Channel:
        """A channel from `caller` to the `target` service, carrying end users it is given."""
        interceptors: list[Any] = [
            PropagateEndUser(identity_signer(self.env(caller)), pki.spiffe_id(target))
        ]
        return grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            channel_credentials(self.identity_dir(caller)),
            options=channel_options(target),
            interceptors=interceptors,
        )
