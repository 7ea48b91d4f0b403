"""Outbound gRPC: one channel per downstream service, built the same way everywhere.

`MeshClient(env).channel("account")` returns a grpc.aio channel to every
address endpoints.json lists for that service, balanced round-robin, with:

* mutual TLS from this service's identity directory, re-opened when the
  certificates rotate (`mesh.tls.RotatingChannel`), the server name pinned to
  `<service>.bankmesh.local`;
* a retry policy in the service config (UNAVAILABLE only: every bankmesh
  mutation is idempotent by a client-chosen id, so a retry cannot move money twice);
* the outbound interceptors (`mesh.interceptors.outbound`): request id, trace
  context, the end user re-signed for the callee, the caller's remaining
  deadline, and a circuit breaker per downstream.

Ask for `channel()` per call (it is cheap): after a rotation it is a new channel.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from mesh import pki
from mesh.assertions import AssertionSigner
from mesh.config import ServiceEnvironment
from mesh.interceptors.outbound import (
    CircuitBreaker,
    PropagateDeadline,
    PropagateEndUser,
    PropagateRequestId,
    PropagateTraceContext,
)
from mesh.security import identity_signer
from mesh.tls import RotatingChannel

RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.05s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [{"name": [{}], "retryPolicy": RETRY_POLICY}],
        }
    )


def target_for(addresses: Sequence[str]) -> str:
    """A gRPC target that resolves to all `addresses`.

    One address is dialled as it is. Several become a static `ipv4:`/`ipv6:`
    list, which gRPC balances over; those schemes take literal addresses only,
    so host names are resolved here first.
    """
    if len(addresses) == 1:
        return addresses[0]
    resolved = [_literal(address) for address in addresses]
    ipv6 = any(a.startswith("[") for a in resolved)
    return ("ipv6:" if ipv6 else "ipv4:") + ",".join(resolved)


def _literal(address: str) -> str:
    host, _, port = address.rpartition(":")
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        family, *_, sockaddr = socket.getaddrinfo(bare, int(port), type=socket.SOCK_STREAM)[0]
        bare = str(sockaddr[0])
        return f"[{bare}]:{port}" if family == socket.AF_INET6 else f"{bare}:{port}"
    return address


CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.service_config", service_config()),
    ("grpc.enable_retries", 1),
    # gRPC's defaults (first retry after 1 s, growing 1.6x to 2 minutes) are
    # made for clients of a distant server. Between services a lost
    # connection (a restarted peer, a dropped link) should be redialled
    # within a second or two of coming back: the chaos runs measured over
    # 7 s of lost payments after a 5 s outage of one hop with the defaults.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class MeshClient:
    """Channels to the other services named in endpoints.json, created on first use."""

    def __init__(
        self, env: ServiceEnvironment, *, on_own_behalf: frozenset[str] = frozenset()
    ) -> None:
        """`on_own_behalf`: downstreams this service calls as itself, never for an end user.

        The payment service, say, checks the customer's right to pay and then
        moves money on the ledger as the payment service: the ledger's
        transfer methods are not for end users at all.
        """
        self._env = env
        self._own_behalf = on_own_behalf
        if not env.insecure_dev:
            identity_signer(env)  # refuses, with advice, a service that has no identity
        self._channels: dict[str, RotatingChannel | grpc.aio.Channel] = {}
        self.breakers: dict[str, CircuitBreaker] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            addresses = self._env.endpoints().get(service)
            if not addresses:
                raise LookupError(
                    f"no address for the {service} service in {self._env.endpoints_file}; "
                    "is it running (bankmesh status)?"
                )
            self._channels[service] = self._open(service, target_for(addresses))
        channel = self._channels[service]
        return channel.channel() if isinstance(channel, RotatingChannel) else channel

    def _open(self, service: str, target: str) -> RotatingChannel | grpc.aio.Channel:
        breaker = self.breakers[service] = CircuitBreaker(service)
        signs = service not in self._own_behalf

        def chain(key_pem: bytes | None) -> list[Any]:
            interceptors: list[Any] = [PropagateRequestId(), PropagateTraceContext()]
            if key_pem is not None and signs:
                # Signed with the key of the channel the call goes out on: the
                # callee checks it against that connection's certificate.
                signer = AssertionSigner(key_pem, pki.spiffe_id(self._env.name))
                interceptors.append(PropagateEndUser(lambda: signer, pki.spiffe_id(service)))
            return [*interceptors, PropagateDeadline(), breaker]

        if self._env.insecure_dev:
            return grpc.aio.insecure_channel(
                target, options=CHANNEL_OPTIONS, interceptors=chain(None)
            )
        assert self._env.identity_dir is not None  # identity_signer() checked it
        return RotatingChannel(
            target,
            self._env.identity_dir,
            service=service,
            options=CHANNEL_OPTIONS,
            keyed_interceptors=chain,
        )

    async def close(self) -> None:
        for channel in self._channels.values():
            if isinstance(channel, RotatingChannel):
                await channel.close()
            else:
                await channel.close(grace=None)
        self._channels.clear()
