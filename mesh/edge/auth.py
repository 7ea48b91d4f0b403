"""Who is calling: the bearer access token, checked at the edge before anything is forwarded.

`Authenticator.authenticate(header, mutating=...)` turns an `Authorization:
Bearer <jwt>` header into the `EndUser` that the outbound interceptor signs
for the services (mesh.assertions), or raises a 401 `EdgeError`
(TOKEN_INVALID / TOKEN_EXPIRED, with `WWW-Authenticate: Bearer`).

The checks are split in ports so the edge does not depend on how identity
issues tokens:

* `KeyRing` holds the public keys (a JWKS) that verify access tokens. It is
  filled from identity's `GetJwks` over mTLS when the edge starts and
  refreshed every `refresh_interval` seconds (sooner while empty), never per
  token and never from anything a token says: a token's `kid` only *selects*
  a key already in the ring; `jku`, `x5u`, `jwk`, `x5c` are never read. A
  failed refresh keeps the previous keys, so a short identity outage does not
  lock everyone out; a key that identity stops publishing stops verifying at
  the next refresh.
* `TokenVerifier` checks one token against the keys (ES256 only, `typ`
  at+jwt, iss, aud, exp with at most 60 s of skew).
* `SessionCheck` asks whether the token's session was ended (logout).
  When Redis cannot say, a read (GET) goes through on the token's own
  validity (it expires within 15 minutes anyway) and anything that changes
  state is refused with 503: a logged-out phone must not move money because
  Redis blinked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from mesh.context import EndUser
from mesh.edge.errors import EdgeError, unauthenticated

log = logging.getLogger("bankmesh.edge.auth")

ALGORITHM = "ES256"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JOSE typ value (RFC 9068), not a secret
MAX_CLOCK_SKEW_SECONDS = 60
MAX_TOKEN_CHARS = 8192
DEFAULT_ISSUER = "https://identity.bankmesh.local"
DEFAULT_AUDIENCE = "https://api.bankmesh.local"


class TokenRefused(Exception):
    """Not an acceptable access token. `reason` is TOKEN_INVALID or TOKEN_EXPIRED."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    user: EndUser
    session_id: str
    token_id: str
    expires_at: int


Jwk = Mapping[str, Any]


class TokenVerifier(Protocol):
    def __call__(self, token: str, keys: Sequence[Jwk]) -> VerifiedToken:
        """The token's claims if valid for us under `keys`; TokenRefused otherwise."""
        ...


class SessionCheck(Protocol):
    async def __call__(self, session_id: str) -> bool:
        """True when the session was ended; SessionUnknown when the store cannot say."""
        ...


class SessionUnknown(Exception):
    """The session store did not answer."""


class JwksSource(Protocol):
    async def __call__(self) -> Sequence[Jwk]:
        """The current public keys, as JWK objects. Raises when they cannot be had."""
        ...


class KeyRing:
    """The JWKS the edge verifies with, refreshed in the background."""

    def __init__(
        self,
        source: JwksSource,
        *,
        refresh_interval: float = 300.0,
        retry_interval: float = 5.0,
    ) -> None:
        self._source = source
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self.keys: tuple[Jwk, ...] = ()
        self.last_error = ""

    async def refresh(self) -> bool:
        """Fetch the keys once; keep the old ones if that fails. True on success."""
        try:
            keys = tuple(await self._source())
        except Exception as exc:  # any failure of the source keeps the keys we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("JWKS refresh failed, keeping %d keys: %s", len(self.keys), exc)
            return False
        if {k.get("kid") for k in keys} != {k.get("kid") for k in self.keys}:
            log.info("JWKS now has key ids %s", sorted(str(k.get("kid")) for k in keys))
        self.keys, self.last_error = keys, ""
        return True

    async def run(self) -> None:
        """Refresh forever: every refresh_interval, or retry_interval while failing or empty."""
        while True:
            ok = await self.refresh()
            await asyncio.sleep(
                self._refresh_interval if ok and self.keys else self._retry_interval
            )


def grpc_jwks_source(channel: Callable[[], grpc.aio.Channel]) -> JwksSource:
    """Identity's GetJwks over the mesh (mTLS, as the edge)."""
    from google.protobuf import json_format

    from bankmesh.identity.v1 import identity_service_pb2 as identity
    from bankmesh.identity.v1 import identity_service_pb2_grpc as identity_grpc

    async def fetch() -> Sequence[Jwk]:
        stub = identity_grpc.IdentityServiceStub(channel())
        response = await stub.GetJwks(identity.GetJwksRequest(), timeout=2.0)
        return [
            json_format.MessageToDict(key, preserving_proto_field_name=True)
            for key in response.keys
        ]

    return fetch


class Es256Verifier:
    """A strict ES256 access-token check against a local JWKS (RFC 8725, RFC 9068)."""

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway: int = 30,
    ) -> None:
        if not 0 <= leeway <= MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(f"clock skew must be at most {MAX_CLOCK_SKEW_SECONDS} seconds")
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    def __call__(self, token: str, keys: Sequence[Jwk]) -> VerifiedToken:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRefused("TOKEN_INVALID", "not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused("TOKEN_INVALID", f"unreadable header: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenRefused("TOKEN_INVALID", f"alg must be {ALGORITHM}")
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
            raise TokenRefused("TOKEN_INVALID", f"typ must be {ACCESS_TOKEN_TYPE}")
        if "crit" in header:
            raise TokenRefused("TOKEN_INVALID", "crit headers are not understood")
        key = _select_key(keys, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "sub", "iat", "exp", "jti", "sid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("TOKEN_EXPIRED", "the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenRefused("TOKEN_INVALID", str(exc)) from exc
        roles = claims.get("roles", [])
        cid = claims.get("cid", "")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenRefused("TOKEN_INVALID", "roles must be a list of names")
        if not isinstance(cid, str) or not isinstance(claims["sub"], str) or not claims["sub"]:
            raise TokenRefused("TOKEN_INVALID", "sub and cid must be strings")
        return VerifiedToken(
            user=EndUser(claims["sub"], cid, frozenset(roles)),
            session_id=str(claims["sid"]),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )


def _select_key(keys: Sequence[Jwk], kid: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("TOKEN_INVALID", "the token names no key (kid)")
    for jwk in keys:
        if jwk.get("kid") == kid:
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                break
            try:
                key = ECAlgorithm.from_jwk(
                    {"kty": "EC", "crv": "P-256", "x": jwk.get("x"), "y": jwk.get("y")}
                )
            except (jwt.InvalidKeyError, ValueError, TypeError):
                break
            if isinstance(key, ec.EllipticCurvePublicKey):
                return key
            break
    raise TokenRefused("TOKEN_INVALID", "unknown key id")


REVOKED_SESSION_PREFIX = "bankmesh:identity:revoked-sid:"


def redis_session_check(redis_client: Any, *, timeout: float = 0.25) -> SessionCheck:
    """Logout marks `bankmesh:identity:revoked-sid:<sid>` in Redis; this asks for it."""

    async def revoked(session_id: str) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return bool(await redis_client.exists(REVOKED_SESSION_PREFIX + session_id))
        except Exception as exc:  # Redis down, slow or refusing: the caller decides
            log.warning("revocation list unreachable: %s", type(exc).__name__)
            raise SessionUnknown from exc

    return revoked


class Authenticator:
    """Bearer header -> EndUser, or a 401/503 EdgeError."""

    def __init__(self, keys: KeyRing, verify: TokenVerifier, sessions: SessionCheck) -> None:
        self._keys = keys
        self._verify = verify
        self._sessions = sessions

    async def authenticate(self, authorization: str | None, *, mutating: bool) -> VerifiedToken:
        token = bearer_token(authorization)
        try:
            verified = self._verify(token, self._keys.keys)
        except TokenRefused as exc:
            log.info("access token refused: %s", exc.detail)
            raise unauthenticated(exc.reason, _client_message(exc.reason)) from None
        try:
            revoked = await self._sessions(verified.session_id)
        except SessionUnknown:
            if not mutating:
                return verified  # a read on a valid token; see the module docstring
            raise EdgeError(
                grpc.StatusCode.UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
                "cannot check the session right now; nothing was changed, retry shortly",
            ) from None
        if revoked:
            raise unauthenticated("TOKEN_INVALID", "the session has ended; sign in again")
        return verified


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise EdgeError(
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
            "this route needs an access token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="bankmesh"'},
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("TOKEN_INVALID", "use Authorization: Bearer <token>")
    return token.strip()


def _client_message(reason: str) -> str:
    if reason == "TOKEN_EXPIRED":
        return "the access token has expired; refresh it"
    return "the access token is not valid"


@contextlib.asynccontextmanager
async def running(keys: KeyRing) -> Any:
    """Fetch the keys once, then keep them fresh until the block ends."""
    await keys.refresh()
    task = asyncio.create_task(keys.run())
    try:
        yield keys
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
