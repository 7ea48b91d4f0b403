"""Signed end-user assertions: who a call is for, carried across the mesh.

The edge authenticates a person (their access token) and then calls services
as itself. So that the account service can still say "a customer only sees
their own accounts", the caller attaches an assertion: a short-lived JWT
(ES256) naming the user, their customer id and roles, signed with the
**caller's own mTLS key** and addressed to the callee's SPIFFE id.

The callee verifies it with the public key of the certificate the caller
presented in the TLS handshake. No extra key distribution is needed, an
assertion cannot be replayed by another service (different peer key) or to
another service (different audience), and unsigned headers are worthless.
A service forwarding a call re-signs the same user with its own key.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mesh.context import EndUser

HEADER = "x-bankmesh-end-user"
TOKEN_TYPE = "bankmesh-end-user+jwt"  # noqa: S105 - a JOSE typ value, not a secret
ALGORITHM = "ES256"
LIFETIME_SECONDS = 60
# Re-sign when less than this is left, so an assertion never expires in flight.
_REFRESH_MARGIN_SECONDS = 20


class InvalidAssertion(ValueError):
    """The end-user assertion is missing a part, forged, expired or misaddressed."""


@dataclass
class AssertionSigner:
    """Signs assertions with this service's key; caches them per user and audience."""

    private_key_pem: bytes
    issuer: str
    _cache: dict[tuple[EndUser, str], tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = load_pem_private_key(self.private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("end-user assertions are signed with the service's EC P-256 key")
        self._key = key

    def sign(self, user: EndUser, audience: str) -> str:
        now = time.time()
        cached = self._cache.get((user, audience))
        if cached and cached[1] - now > _REFRESH_MARGIN_SECONDS:
            return cached[0]
        expires = now + LIFETIME_SECONDS
        token = jwt.encode(
            {
                "iss": self.issuer,
                "aud": audience,
                "sub": user.user_id,
                "cid": user.customer_id,
                "roles": sorted(user.roles),
                "iat": int(now),
                "exp": int(expires),
                "jti": uuid.uuid4().hex,
            },
            self._key,
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE},
        )
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: users are many, a service's memory is not
        self._cache[(user, audience)] = (token, float(int(expires)))
        return token


def verify(token: str, *, peer_certificate_pem: bytes, issuer: str, audience: str) -> EndUser:
    """The end user named by `token`, if the TLS peer signed it for us; else InvalidAssertion."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidAssertion("not an end-user assertion")
        public_key = x509.load_pem_x509_certificate(peer_certificate_pem).public_key()
        claims = jwt.decode(
            token,
            public_key,  # type: ignore[arg-type] # an EC key, checked by the algorithm pin
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=5,
            options={"require": ["iss", "aud", "sub", "iat", "exp"]},
        )
    except InvalidAssertion:
        raise
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidAssertion(f"end-user assertion refused: {exc}") from exc
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidAssertion("end-user assertion refused: roles must be a list of names")
    return EndUser(
        user_id=str(claims["sub"]),
        customer_id=str(claims.get("cid", "")),
        roles=frozenset(roles),
    )
