"""``bankmesh status``: where the services are and whether they serve.

Reads ``<data_dir>/endpoints.json`` (rewritten by the supervisor as each
process becomes ready, ``"complete": true`` once all are, removed on a clean
stop) and asks every listed process the standard gRPC health question
(grpc.health.v1.Health/Check for the empty service name, i.e. the server as a
whole). Every service registers that servicer, so no service-specific client
is needed here. A service with public URLs (``urls``: the HTTPS edge) speaks
HTTP, not gRPC: it is asked ``GET <url>/readyz`` instead, trusting the mesh CA
of the operator's credentials, and is SERVING when that answers 200.

A service maps to a list of addresses, one per process (replicas). Files
written before replicas existed map it to one plain string; both are read,
and ``Endpoints.services`` always holds lists.

When endpoints.json has ``credentials`` (the launcher writes them once the
services serve mTLS), the question is asked over mutual TLS as the operator,
expecting each service's certificate for ``<service>.<server_name_suffix>``;
otherwise in plaintext. There is no falling back from one to the other: a
service that should speak mTLS and does not is reported, not talked to.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.pki import TRUST_DOMAIN
from mesh.runtime.errors import MeshError
from mesh.tls import IdentityFiles, channel_options, identity_channel_credentials


@dataclass(frozen=True)
class Endpoints:
    """The contents of endpoints.json.

    ``services`` maps each service to its processes' addresses; a single
    string is taken as a list of one (``addresses`` always gives lists).
    """

    services: Mapping[str, str | Sequence[str]]
    database: str | None = None
    # {"ca", "cert", "key", "server_name_suffix"}; empty for a plaintext mesh.
    credentials: dict[str, str] = field(default_factory=dict)
    redis: str | None = None
    # False while the supervisor is still starting services; files from
    # before the field existed were only ever written complete.
    complete: bool = True
    # Public URLs by service, for those that have one (the edge's https://...).
    urls: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def addresses(self, service: str) -> list[str]:
        """Every address of ``service``, or [] when the mesh does not run it."""
        listed = self.services.get(service, [])
        return [listed] if isinstance(listed, str) else list(listed)

    def urls_of(self, service: str) -> list[str]:
        """The public URLs of ``service``'s processes, or [] when it has none."""
        return list(self.urls.get(service, []))


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
    addresses = {str(name): _addresses(listed) for name, listed in services.items()}
    broken = sorted(name for name, listed in addresses.items() if listed is None)
    if broken:
        raise MeshError(
            f"{path} lists no usable address for {', '.join(broken)}",
            hint="restart the mesh with `bankmesh up`; it rewrites the file",
        )
    credentials = document.get("credentials") or {}
    if not isinstance(credentials, dict) or not all(
        isinstance(v, str) for v in credentials.values()
    ):
        raise MeshError(
            f"{path} has a credentials entry that is not a map of paths",
            hint="restart the mesh with `bankmesh up`; it rewrites the file",
        )
    redis = document.get("redis")
    urls = document.get("urls") or {}
    if not isinstance(urls, dict):
        raise MeshError(
            f"{path} has a urls entry that is not a map",
            hint="restart the mesh with `bankmesh up`; it rewrites the file",
        )
    public = {str(name): _addresses(listed) for name, listed in urls.items()}
    return Endpoints(
        services={name: listed for name, listed in addresses.items() if listed is not None},
        database=document.get("database"),
        credentials=dict(credentials),
        redis=redis if isinstance(redis, str) else None,
        complete=document.get("complete", True) is not False,
        urls={name: listed for name, listed in public.items() if listed is not None},
    )


def _addresses(listed: object) -> list[str] | None:
    """A service's entry as a list of addresses; None when it is neither form."""
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list) or not listed:
        return None
    if not all(isinstance(address, str) and address for address in listed):
        return None
    return [str(address) for address in listed]


@dataclass(frozen=True)
class Transport:
    """How to reach the services: mTLS credentials and the names to expect, or plaintext."""

    credentials: grpc.ChannelCredentials | None = None
    server_name_suffix: str = TRUST_DOMAIN

    @classmethod
    def from_endpoints(cls, credentials: Mapping[str, str]) -> Transport:
        """Plaintext for no credentials; MeshError when they are given but unusable."""
        if not credentials:
            return cls()
        missing = [k for k in ("ca", "cert", "key") if not credentials.get(k)]
        if missing:
            raise MeshError(
                f"endpoints.json credentials lack {', '.join(missing)}",
                hint="restart the mesh with `bankmesh up`; it rewrites the file",
            )
        files = IdentityFiles(
            cert=Path(credentials["cert"]), key=Path(credentials["key"]), ca=Path(credentials["ca"])
        )
        try:
            channel_credentials = identity_channel_credentials(files)
        except (OSError, ValueError) as exc:
            raise MeshError(
                f"cannot use the operator certificate from endpoints.json: {exc}",
                hint="`bankmesh certs` re-issues it (or restart the mesh with `bankmesh up`)",
            ) from exc
        return cls(channel_credentials, credentials.get("server_name_suffix") or TRUST_DOMAIN)


def check_health(
    name: str, address: str, *, timeout: float = 2.0, transport: Transport | None = None
) -> ServiceHealth:
    """Ask the server at ``address`` for its overall gRPC health."""
    transport = transport or Transport()
    if transport.credentials is not None:
        channel = grpc.secure_channel(
            address,
            transport.credentials,
            options=channel_options(name, domain=transport.server_name_suffix),
        )
    else:
        channel = grpc.insecure_channel(address)
    with channel:
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


def local_url(url: str) -> str:
    """``url`` as a client on this machine dials it: a wildcard host becomes loopback.

    A process listening on every address (``--listen-host 0.0.0.0``) reports
    that address, which no certificate names; 127.0.0.1 (or localhost, for
    ``::``) reaches it and is named in the edge's certificate.
    """
    parts = urlsplit(url)
    loopback = {"0.0.0.0": "127.0.0.1", "::": "localhost"}  # noqa: S104 - read, not bound
    wildcard = loopback.get(parts.hostname or "")
    if wildcard is None:
        return url
    netloc = f"{wildcard}:{parts.port}" if parts.port else wildcard
    return parts._replace(netloc=netloc).geturl()


def check_readiness(
    name: str, url: str, *, ca: Path | None = None, timeout: float = 2.0
) -> ServiceHealth:
    """Ask the HTTPS server at ``url`` (the edge) ``GET /readyz``, trusting ``ca``.

    200 is SERVING; another answer NOT_SERVING with what the server said
    (the edge names the dependency that is down); no answer UNREACHABLE.
    """
    parts = urlsplit(local_url(url))
    if parts.scheme != "https" or not parts.hostname:
        return ServiceHealth(name, url, "UNREACHABLE", "not an https:// URL")
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        return ServiceHealth(name, url, "UNREACHABLE", f"cannot read the CA {ca}: {exc}")
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, timeout=timeout, context=context
    )
    try:
        connection.request("GET", parts.path.rstrip("/") + "/readyz")
        response = connection.getresponse()
        body = response.read(4096)
    except TimeoutError:
        return ServiceHealth(name, url, "TIMEOUT", f"no answer within {timeout:g}s")
    except (OSError, http.client.HTTPException) as exc:
        return ServiceHealth(name, url, "UNREACHABLE", str(exc))
    finally:
        connection.close()
    if response.status == 200:
        return ServiceHealth(name, url, "SERVING")
    return ServiceHealth(name, url, "NOT_SERVING", _message(body) or f"HTTP {response.status}")


def _message(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    message = document.get("message") if isinstance(document, dict) else None
    return message if isinstance(message, str) else ""


def check_all(endpoints: Endpoints, *, timeout: float = 2.0) -> list[ServiceHealth]:
    """Health of every process, by service name, over the transport endpoints.json says.

    A service with public URLs is asked over HTTPS (``check_readiness``), the
    others over gRPC. MeshError if the gRPC transport is unusable.
    """
    transport = Transport.from_endpoints(endpoints.credentials)
    ca = endpoints.credentials.get("ca")
    results: list[ServiceHealth] = []
    for name in sorted(endpoints.services):
        urls = endpoints.urls_of(name)
        if urls:
            results += [
                check_readiness(name, url, ca=Path(ca) if ca else None, timeout=timeout)
                for url in urls
            ]
            continue
        results += [
            check_health(name, address, timeout=timeout, transport=transport)
            for address in endpoints.addresses(name)
        ]
    return results
