"""An identity stand-in for edge tests: an ES256 key, its JWKS, and access tokens it signs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from mesh.edge.auth import Jwk
from mesh.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER


class TokenIssuer:
    """Signs access tokens the way identity does (RFC 9068 at+jwt, ES256)."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        public = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "ES256"}

    async def jwks(self) -> Sequence[Jwk]:
        """A JwksSource serving this issuer's key."""
        return [self.jwk()]

    def token(
        self,
        user_id: str = "user-1",
        customer_id: str = "",
        roles: Sequence[str] = ("customer",),
        *,
        lifetime: int = 600,
        issued_at: float | None = None,
        header: dict[str, Any] | None = None,
        sid: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        now = time.time() if issued_at is None else issued_at
        payload = {
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "sub": user_id,
            "cid": customer_id,
            "roles": list(roles),
            "iat": int(now),
            "exp": int(now + lifetime),
            "jti": uuid.uuid4().hex,
            "sid": sid or f"session-{user_id}",
            **(claims or {}),
        }
        headers = {"typ": "at+jwt", "kid": self.kid, **(header or {})}
        return jwt.encode(payload, self.key, algorithm="ES256", headers=headers)

    def customer(self, customer_id: str) -> str:
        return self.token(f"user-{customer_id}", customer_id, ("customer",))
