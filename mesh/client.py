"""Outbound gRPC: one channel per downstream service, built the same way everywhere.

`MeshClient(env).channel("account")` returns a grpc.aio channel to every
address endpoints.json lists for that service, balanced round-robin, with a
retry policy in the service config (UNAVAILABLE only, for methods that are
safe to repeat) and the mesh's client interceptors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from mesh.config import ServiceEnvironment

# Every bankmesh mutation is idempotent by a client-chosen id (transfer id,
# idempotency key), so retrying UNAVAILABLE (the request never reached a
# server, or the server went away) cannot duplicate money movement.
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
    """A gRPC target that resolves to all `addresses` (ipv4:/ipv6: static lists)."""
    if len(addresses) == 1:
        return addresses[0]
    ipv6 = any(a.startswith("[") for a in addresses)
    return ("ipv6:" if ipv6 else "ipv4:") + ",".join(addresses)


class MeshClient:
    """Channels to the other services named in endpoints.json, created on first use."""

    def __init__(
        self,
        env: ServiceEnvironment,
        *,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self._env = env
        self._interceptors = list(interceptors)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            addresses = self._env.endpoints().get(service)
            if not addresses:
                raise LookupError(
                    f"no address for the {service} service in {self._env.endpoints_file}; "
                    "is it running (bankmesh status)?"
                )
            self._channels[service] = self._open(target_for(addresses))
        return self._channels[service]

    def _open(self, target: str) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", service_config()),
            ("grpc.enable_retries", 1),
        ]
        return grpc.aio.insecure_channel(target, options=options, interceptors=self._interceptors)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)
        self._channels.clear()
