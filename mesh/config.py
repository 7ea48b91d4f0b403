"""How a service process learns where it runs and what it talks to.

The launcher (`bankmesh up`) and tests pass everything through environment
variables, so a service can also be started by hand or by any process manager:

| variable                 | meaning                                                   |
|--------------------------|-----------------------------------------------------------|
| BANKMESH_DATABASE_URL    | libpq URL of the service's own database                   |
| BANKMESH_REDIS_URL       | redis:// or unix:// URL (services that use Redis)         |
| BANKMESH_LISTEN          | host:port to bind (default 127.0.0.1:0)                   |
| BANKMESH_READY_FILE      | where to write {"service", "address", "pid"} once serving |
| BANKMESH_ENDPOINTS       | endpoints.json listing the other services                 |
| BANKMESH_IDENTITY_DIR    | this service's cert.pem, key.pem and the mesh's ca.pem    |
| BANKMESH_INSECURE_DEV    | "1": plaintext on loopback, no mTLS (development only)    |
| BANKMESH_TRACE_FILE      | where spans go, one JSON object a line (mesh.telemetry)   |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceEnvironment:
    name: str
    listen: str = "127.0.0.1:0"
    database_url: str = ""
    redis_url: str = ""
    ready_file: Path | None = None
    endpoints_file: Path | None = None
    identity_dir: Path | None = None
    insecure_dev: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, name: str) -> ServiceEnvironment:
        env = os.environ

        def path(key: str) -> Path | None:
            return Path(env[key]) if env.get(key) else None

        return cls(
            name=name,
            listen=env.get("BANKMESH_LISTEN", "127.0.0.1:0"),
            database_url=env.get("BANKMESH_DATABASE_URL") or env.get("DATABASE_URL", ""),
            redis_url=env.get("BANKMESH_REDIS_URL") or env.get("REDIS_URL", ""),
            ready_file=path("BANKMESH_READY_FILE"),
            endpoints_file=path("BANKMESH_ENDPOINTS"),
            identity_dir=path("BANKMESH_IDENTITY_DIR"),
            insecure_dev=env.get("BANKMESH_INSECURE_DEV") == "1",
        )

    def require_database(self) -> str:
        if not self.database_url:
            raise SystemExit(
                f"{self.name} service: set BANKMESH_DATABASE_URL (or run it through `bankmesh up`)"
            )
        return self.database_url

    def endpoints(self) -> dict[str, list[str]]:
        """Other services' addresses from endpoints.json: name -> one or more host:port."""
        if self.endpoints_file is None or not self.endpoints_file.exists():
            return {}
        services = json.loads(self.endpoints_file.read_text()).get("services", {})
        return {
            name: [address] if isinstance(address, str) else list(address)
            for name, address in services.items()
        }

    def write_ready_file(self, address: str) -> None:
        """Atomically: the launcher polls for it and must never read half a file."""
        if self.ready_file is None:
            return
        tmp = self.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"service": self.name, "address": address, "pid": os.getpid()}))
        tmp.replace(self.ready_file)
