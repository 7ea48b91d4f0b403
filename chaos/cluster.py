"""The mesh under test: every service a process of its own, every hop through a proxy.

``ChaosMesh`` does what ``bankmesh up`` does (mesh.runtime.launcher), with
the pieces held so faults can reach them:

* its own PostgreSQL and Redis (chaos.engines), never the machine's;
* the mesh CA and one certificate per service and for the operator, in
  ``<run>/pki``, which ``rotate_certificates`` and ``expire_certificate``
  re-issue while the services run;
* one ``mesh.runtime.supervisor.Supervisor`` starting the services from the
  launcher's own specs (databases, migrations, identity's keys), each on a
  port chosen up front, so that ``kill`` (SIGKILL) and ``restart`` bring a
  service back where its callers expect it;
* a proxy (chaos.proxy) per hop. Each caller gets an endpoints file of its
  own, ``<run>/endpoints/<caller>.json``, that names the proxies in front of
  its callees; the harness's own clients ("client") dial proxies too. TLS
  names the service, not the address, so the detour is transparent.

The run's settings differ from ``bankmesh up`` in two places, both for the
workload's sake and both in ``SERVICE_ENV``: risk scores with
``chaos/risk-ruleset.toml`` (the default ruleset with velocity limits a busy
test bank does not trip: otherwise nearly every payment after the fifth in a
minute from an account is declined and no money moves), and the edge allows
the one signed-in customer of the workload more payments per minute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from chaos.engines import ChaosPostgres, ChaosRedis, free_port
from chaos.proxy import Mode, Proxy, ProxyHub
from mesh.pki import (
    OPERATOR,
    TRUST_DOMAIN,
    CertificateAuthority,
    identity_directory,
    issue_mesh_identities,
)
from mesh.runtime.launcher import DEFAULT_SERVICES, QuietReporter, prepare_audited_service
from mesh.runtime.postgres import ensure_database
from mesh.runtime.supervisor import RunningService, ServiceSpec, Supervisor

CLIENT = "client"  # the harness's own workload
RULESET = Path(__file__).resolve().parent / "risk-ruleset.toml"

# Who calls whom (docs/architecture.md); each pair is a proxied hop.
CALLS: dict[str, tuple[str, ...]] = {
    "payment": ("account", "risk"),
    "edge": ("account", "payment", "identity"),
    CLIENT: ("account", "payment", "identity", "edge"),
}

SERVICE_ENV: dict[str, dict[str, str]] = {
    "risk": {"BANKMESH_RISK_RULESET": str(RULESET)},
    "edge": {"BANKMESH_EDGE_RATE_CREATE_PAYMENT": "6000/60"},
}


@dataclass(frozen=True)
class Hop:
    """Where a caller reaches a callee: the proxy's address."""

    caller: str
    callee: str
    address: str


class ChaosMesh:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir.resolve()
        self.postgres = ChaosPostgres(self.run_dir)
        self.redis = ChaosRedis(self.run_dir)
        self.pki_dir = self.run_dir / "pki"
        self.supervisor = Supervisor(self.run_dir, ready_timeout=60.0, grace_period=5.0)
        self.specs: dict[str, ServiceSpec] = {
            spec.name: replace(spec, env={**spec.env, **SERVICE_ENV.get(spec.name, {})})
            for spec in DEFAULT_SERVICES
        }
        self.ports = {name: free_port() for name in self.specs}
        self.database_urls: dict[str, str] = {}  # as the admin: migrations, the checker
        self.service_urls: dict[str, str] = {}  # audited services log in as their own role
        self.hub = ProxyHub()
        self.hops: dict[tuple[str, str], Proxy] = {}
        self.edge_url = ""

    # -- start and stop -------------------------------------------------------------

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        issue_mesh_identities(
            self.pki_dir, [*self.specs, OPERATOR], renew_within=timedelta(hours=1)
        )
        for caller, callees in CALLS.items():
            for callee in callees:
                self.hops[(caller, callee)] = self.hub.add(caller, callee, self.ports[callee])
            self._write_endpoints(caller)
        for spec in list(self.specs.values()):
            if spec.uses_database:
                url = ensure_database(self.postgres.url, spec.database_name)
                self.database_urls[spec.name] = url
                self.supervisor.migrate(spec, url)
            self.supervisor.prepare(spec, self.database_urls.get(spec.name))
            if spec.uses_database and spec.audited:
                # As bankmesh up does: the service's own INSERT-only role and its
                # checkpoint key. The checker keeps the admin URL.
                spec, url = prepare_audited_service(
                    self.supervisor, spec, self.postgres.url, QuietReporter()
                )
                self.specs[spec.name] = spec
                self.service_urls[spec.name] = url
            running = self.start_service(spec.name)
            if running.url:
                self.edge_url = running.url

    def start_service(self, name: str) -> RunningService:
        spec = self.specs[name]
        endpoints = self.endpoints_file(name) if name in CALLS else None
        return self.supervisor.start(
            spec,
            self.service_urls.get(name, self.database_urls.get(name)),
            f"127.0.0.1:{self.ports[name]}",
            identity_dir=identity_directory(self.pki_dir, name),
            redis_url=self.redis.url if spec.uses_redis else None,
            endpoints_file=endpoints,
        )

    def stop(self) -> None:
        try:
            self.supervisor.stop_all()
        finally:
            self.hub.close()
            self.redis.stop()
            self.postgres.stop()

    # -- faults -----------------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.supervisor.kill(name)

    def set_mode(self, proxies: list[Proxy], mode: Mode, delay: float = 0.0) -> None:
        self.hub.set_mode(proxies, mode, delay)

    def reset_connections_to(self, name: str) -> None:
        """Reset every proxied connection into or out of ``name``: all its peers handshake anew."""
        self.hub.reset(p for p in self.hub.proxies.values() if name in (p.caller, p.callee))

    def rotate_certificates(self) -> None:
        """Re-issue every identity (services and operator) from the same CA, as `bankmesh certs` does."""
        issue_mesh_identities(self.pki_dir, [*self.specs, OPERATOR])

    def expire_certificate(self, name: str, lifetime: timedelta) -> None:
        """Give ``name`` a certificate that lapses after ``lifetime``: a rotation that never came."""
        ca = CertificateAuthority.load(self.pki_dir / "ca")
        ca.issue(name, directory=identity_directory(self.pki_dir, name), lifetime=lifetime)

    def renew_certificate(self, name: str) -> None:
        ca = CertificateAuthority.load(self.pki_dir / "ca")
        ca.issue(name, directory=identity_directory(self.pki_dir, name))

    # -- where things are ---------------------------------------------------------------

    def endpoints_file(self, caller: str) -> Path:
        return self.run_dir / "endpoints" / f"{caller}.json"

    def address(self, caller: str, callee: str) -> str:
        return f"127.0.0.1:{self.hops[(caller, callee)].port}"

    def client_edge_url(self) -> str:
        return f"https://127.0.0.1:{self.hops[(CLIENT, 'edge')].port}"

    def operator_identity(self) -> Path:
        return identity_directory(self.pki_dir, OPERATOR)

    def edge_ca(self) -> Path:
        return identity_directory(self.pki_dir, "edge") / "ca.pem"

    def _write_endpoints(self, caller: str) -> None:
        path = self.endpoints_file(caller)
        path.parent.mkdir(parents=True, exist_ok=True)
        operator = self.operator_identity()
        document = {
            "services": {callee: [self.address(caller, callee)] for callee in CALLS[caller]},
            "urls": {},
            "credentials": {
                "ca": str(operator / "ca.pem"),
                "cert": str(operator / "cert.pem"),
                "key": str(operator / "key.pem"),
                "server_name_suffix": TRUST_DOMAIN,
            },
            "complete": True,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
