"""A service's mesh identity, turned into server security and client signing.

Every service process gets `BANKMESH_IDENTITY_DIR` (its cert.pem, key.pem
and the mesh's ca.pem, issued by `bankmesh up` / `bankmesh certs`). From it:

* `server_security(env)`: mutual TLS with the policy, for `build_server`;
* `identity_signer(env)`: signs end-user assertions with the same key, so the
  callee can check them against the certificate it saw in the handshake.

Without an identity directory a service refuses to start, unless
`BANKMESH_INSECURE_DEV=1` says plaintext is wanted (development only, and the
server logs that loudly).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mesh import pki, tls
from mesh.assertions import AssertionSigner
from mesh.config import ServiceEnvironment
from mesh.policy import Policy
from mesh.server import ServerSecurity

log = logging.getLogger("bankmesh.security")


class InsecureConfiguration(SystemExit):
    pass


def server_security(env: ServiceEnvironment, policy: Policy | None = None) -> ServerSecurity | None:
    if env.insecure_dev:
        log.warning("BANKMESH_INSECURE_DEV=1: %s runs WITHOUT mTLS or access control", env.name)
        return None
    identity_dir = _identity_dir(env)
    return ServerSecurity(
        credentials=tls.server_credentials(identity_dir),
        spiffe_id=pki.spiffe_id(env.name),
        policy=policy or Policy.load(),
        read_peer=tls.peer_identity,
    )


class RotatingSigner:
    """Signs end-user assertions with the current key.pem, re-read after rotation."""

    def __init__(self, key_file: Path, issuer: str, check_interval: float = 5.0) -> None:
        self._key_file = key_file
        self._issuer = issuer
        self._check_interval = check_interval
        self._checked_at = time.monotonic()
        self._mtime = key_file.stat().st_mtime_ns
        self._signer = AssertionSigner(key_file.read_bytes(), issuer)

    def __call__(self) -> AssertionSigner:
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            mtime = self._key_file.stat().st_mtime_ns
            if mtime != self._mtime:
                self._signer = AssertionSigner(self._key_file.read_bytes(), self._issuer)
                self._mtime = mtime
        return self._signer


def identity_signer(env: ServiceEnvironment) -> RotatingSigner:
    return RotatingSigner(_identity_dir(env) / "key.pem", pki.spiffe_id(env.name))


def _identity_dir(env: ServiceEnvironment) -> Path:
    if env.identity_dir is None:
        raise InsecureConfiguration(
            f"{env.name} service: no mesh identity. Set BANKMESH_IDENTITY_DIR to a directory "
            "from `bankmesh certs` (bankmesh up does this), or BANKMESH_INSECURE_DEV=1 "
            "for plaintext development"
        )
    return env.identity_dir
