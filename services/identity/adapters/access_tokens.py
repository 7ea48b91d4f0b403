"""Access tokens: ES256 JWTs (RFC 9068) signed with the current key of the key set.

    header  {"alg": "ES256", "typ": "at+jwt", "kid": <current kid>}
    claims  iss, aud, sub (user id), iat, nbf (= iat), exp (iat + lifetime,
            at most 900 s), jti (random), sid (session id), cid (customer id
            or ""), roles (sorted)

What verifies them is mesh.tokens (the edge uses it); `public_keys` is what
GetJwks publishes: the next key (if a rotation is pending), the current one
and those still in their overlap window.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import jwt

from mesh.tokens import ACCESS_TOKEN_TYPE, ALGORITHM, MAX_ACCESS_TOKEN_SECONDS
from services.identity.service_layer.ports import IssuedAccessToken, TokenSubject

from .signing_keys import LoadedKeySet


class JwtAccessTokens:
    def __init__(
        self,
        keys: Callable[[], LoadedKeySet],
        *,
        issuer: str,
        audience: str,
        lifetime_seconds: int = MAX_ACCESS_TOKEN_SECONDS,
    ) -> None:
        if not 0 < lifetime_seconds <= MAX_ACCESS_TOKEN_SECONDS:
            raise ValueError(
                f"an access token lives 1 to {MAX_ACCESS_TOKEN_SECONDS} seconds, "
                f"not {lifetime_seconds}"
            )
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds

    @property
    def lifetime_seconds(self) -> int:
        return self._lifetime

    def issue(self, subject: TokenSubject, now: datetime) -> IssuedAccessToken:
        signer = self._keys().signer(now)
        issued_at = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(subject.user_id),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self._lifetime,
            "jti": uuid.uuid4().hex,
            "sid": str(subject.session_id),
            "cid": str(subject.customer_id) if subject.customer_id else "",
            "roles": sorted(subject.roles),
        }
        token = jwt.encode(
            claims,
            signer.key,
            algorithm=ALGORITHM,
            headers={"typ": ACCESS_TOKEN_TYPE, "kid": signer.kid},
        )
        return IssuedAccessToken(token, self._lifetime)

    def public_keys(self, now: datetime) -> Sequence[Mapping[str, str]]:
        return self._keys().public_jwks(now)
