"""What the edge can be told, beyond the launcher's contract (mesh.config).

| variable                           | default                          | meaning                        |
|------------------------------------|----------------------------------|--------------------------------|
| BANKMESH_EDGE_TOKEN_ISSUER         | https://identity.bankmesh.local  | `iss` access tokens must carry |
| BANKMESH_EDGE_TOKEN_AUDIENCE       | https://api.bankmesh.local       | `aud` access tokens must carry |
| BANKMESH_EDGE_CORS_ORIGINS         | (none)                           | comma-separated allowed origins|
| BANKMESH_EDGE_MAX_BODY_BYTES       | 65536                            | larger request bodies get 413  |
| BANKMESH_EDGE_DEFAULT_TIMEOUT      | 10                               | seconds, without a header      |
| BANKMESH_EDGE_MAX_TIMEOUT          | 30                               | cap on X-Request-Timeout       |
| BANKMESH_EDGE_JWKS_REFRESH_SECONDS | 300                              | how often keys are re-fetched  |
| BANKMESH_EDGE_TLS_CERT / _KEY      | the edge's mesh certificate      | the public certificate (PEM)   |
| BANKMESH_EDGE_RATE_LOGIN           | 10/60                            | count/seconds per client IP    |
| BANKMESH_EDGE_RATE_REFRESH         | 30/60                            | count/seconds per client IP    |
| BANKMESH_EDGE_RATE_CREATE_PAYMENT  | 30/60                            | count/seconds per user         |
| BANKMESH_EDGE_UPSTREAMS            | account,payment,identity         | services /readyz asks          |
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh.edge.ratelimit import DEFAULT_RULES, Rule, rules_from_env
from mesh.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER


class Auth(enum.StrEnum):
    """What a route asks of the Authorization header."""

    REQUIRED = "required"  # no valid token, no call
    OPTIONAL = "optional"  # anonymous, or on behalf of the token's user if one is sent
    NONE = "none"  # the header is ignored: the call is never on behalf of a user


# Routes that work without a token. Everything else needs one: the services
# read a call without an end user as the edge acting on its own.
DEFAULT_AUTH: Mapping[str, Auth] = {
    "/bankmesh.identity.v1.IdentityService/Login": Auth.NONE,
    "/bankmesh.identity.v1.IdentityService/RefreshToken": Auth.NONE,
    "/bankmesh.identity.v1.IdentityService/GetJwks": Auth.NONE,
    # Self sign-up when anonymous; staff register customers with their token.
    "/bankmesh.identity.v1.IdentityService/CreateCustomer": Auth.OPTIONAL,
}


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    default_timeout: float = 10.0
    max_timeout: float = 30.0
    jwks_refresh_seconds: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rate_rules: Mapping[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    auth: Mapping[str, Auth] = field(default_factory=lambda: dict(DEFAULT_AUTH))
    upstreams: tuple[str, ...] = ("account", "payment", "identity")

    def auth_for(self, grpc_path: str) -> Auth:
        return self.auth.get(grpc_path, Auth.REQUIRED)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EdgeSettings:
        default = cls()

        def number(name: str, fallback: float) -> float:
            value = env.get(name, "")
            return float(value) if value else fallback

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        origins = tuple(o.strip() for o in env.get("BANKMESH_EDGE_CORS_ORIGINS", "").split(","))
        upstreams = tuple(
            s.strip() for s in env.get("BANKMESH_EDGE_UPSTREAMS", "").split(",") if s.strip()
        )
        return cls(
            issuer=env.get("BANKMESH_EDGE_TOKEN_ISSUER") or default.issuer,
            audience=env.get("BANKMESH_EDGE_TOKEN_AUDIENCE") or default.audience,
            cors_origins=tuple(o for o in origins if o),
            max_body_bytes=int(number("BANKMESH_EDGE_MAX_BODY_BYTES", default.max_body_bytes)),
            default_timeout=number("BANKMESH_EDGE_DEFAULT_TIMEOUT", default.default_timeout),
            max_timeout=number("BANKMESH_EDGE_MAX_TIMEOUT", default.max_timeout),
            jwks_refresh_seconds=number(
                "BANKMESH_EDGE_JWKS_REFRESH_SECONDS", default.jwks_refresh_seconds
            ),
            tls_cert=path("BANKMESH_EDGE_TLS_CERT"),
            tls_key=path("BANKMESH_EDGE_TLS_KEY"),
            rate_rules=rules_from_env(env),
            upstreams=upstreams or default.upstreams,
        )
