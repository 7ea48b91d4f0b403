"""Who is calling: the bearer access token, checked at the edge before anything is forwarded.

`Authenticator.authenticate(header, mutating=...)` turns an `Authorization:
Bearer <jwt>` header into the `EndUser` that the outbound interceptor signs
for the services (mesh.assertions), or raises a 401 `EdgeError`
(TOKEN_INVALID / TOKEN_EXPIRED, with `WWW-Authenticate: Bearer`).

Three parts, each a port so tests can stand in for identity:

* `KeyRing` holds the public keys (a `mesh.tokens.Jwks`) that verify access
  tokens. It is filled from identity's `GetJwks` over mTLS when the edge
  starts and refreshed every `refresh_interval` seconds (sooner while it is
  empty), never per token and never from anything a token says: a token's
  `kid` only *selects* a key already in the ring. A failed refresh, or a key
  set that does not parse as a whole, keeps the previous keys, so a short
  identity outage locks nobody out; a key identity stops publishing stops
  verifying at the next refresh. A token whose kid the ring does not know
  (identity rotated its key since the last refresh) makes the ring refresh
  at once, at most every `min_refresh_interval` seconds however many such
  tokens arrive. While the ring has no keys at all (an edge just started,
  identity not reachable yet) a token cannot be judged: that is 503
  DEPENDENCY_UNAVAILABLE, to retry, never a 401 that would sign the
  customer out.
* `TokenVerifier` checks one token against the ring. The default is
  `mesh.tokens.verify_access_token`, the one verifier every service shares
  (ES256 only, typ at+jwt, iss, aud, exp, at most 60 s of skew).
* `SessionCheck` asks whether the token's session was ended (logout): the key
  `mesh.tokens.revoked_sid_key(sid)` in Redis. When Redis cannot say, a read
  (GET) goes through on the token's own validity (it expires within 15
  minutes anyway) and anything that changes state is refused with 503
  DEPENDENCY_UNAVAILABLE: a logged-out phone must not move money because
  Redis blinked, and a healthy session must not be told to sign in again.
  (`mesh.tokens.session_revoked` folds "unknown" into its boolean, which
  would turn that 503 into a 401, so the edge asks Redis itself.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import grpc.aio

from mesh import tokens
from mesh.context import EndUser
from mesh.edge.errors import EdgeError, unauthenticated

log = logging.getLogger("bankmesh.edge.auth")

Jwk = Mapping[str, Any]


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


class TokenVerifier(Protocol):
    def __call__(self, token: str, keys: tokens.Jwks) -> VerifiedToken:
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
        min_refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._last_on_demand: float | None = None
        self._on_demand: asyncio.Task[bool] | None = None
        self.jwks = tokens.Jwks({})
        self.last_error = ""

    async def refresh_on_demand(self) -> bool:
        """Refresh now, unless one was asked for within `min_refresh_interval`.

        Concurrent callers share one fetch. True when the ring was refreshed
        (by this call or the one it joined); False when it was too soon or
        the fetch failed. A token naming a made-up kid can therefore cost
        identity at most one GetJwks per interval, whatever the traffic.
        """
        if self._on_demand is not None and not self._on_demand.done():
            return await asyncio.shield(self._on_demand)
        now = self._clock()
        if self._last_on_demand is not None and (
            now - self._last_on_demand < self._min_refresh_interval
        ):
            return False
        self._last_on_demand = now
        self._on_demand = asyncio.ensure_future(self.refresh())
        return await asyncio.shield(self._on_demand)

    async def refresh(self) -> bool:
        """Fetch the keys once; keep the old ones if that fails. True on success."""
        try:
            jwks = tokens.Jwks.from_dicts(await self._source())
        except Exception as exc:  # any failure of the source keeps the keys we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("JWKS refresh failed, keeping %d keys: %s", len(self.jwks.keys), exc)
            return False
        if jwks.kids != self.jwks.kids:
            log.info("JWKS now has key ids %s", sorted(jwks.kids))
        self.jwks, self.last_error = jwks, ""
        return True

    async def run(self) -> None:
        """Refresh forever: every refresh_interval, or retry_interval while failing or empty."""
        while True:
            ok = await self.refresh()
            await asyncio.sleep(
                self._refresh_interval if ok and self.jwks.keys else self._retry_interval
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


class AccessTokenVerifier:
    """`mesh.tokens.verify_access_token` for one issuer and audience."""

    def __init__(
        self, *, issuer: str = tokens.DEFAULT_ISSUER, audience: str = tokens.DEFAULT_AUDIENCE
    ) -> None:
        self._issuer = issuer
        self._audience = audience

    def __call__(self, token: str, keys: tokens.Jwks) -> VerifiedToken:
        try:
            claims = tokens.verify_access_token(
                token, keys, issuer=self._issuer, audience=self._audience
            )
        except tokens.TokenRejected as exc:
            raise TokenRefused(exc.reason.value, exc.detail) from None
        return VerifiedToken(
            user=claims.end_user(),
            session_id=claims.session_id,
            token_id=claims.token_id,
            expires_at=claims.expires_at,
        )


def redis_session_check(redis_client: Any, *, timeout: float = 0.25) -> SessionCheck:
    """Asks Redis for identity's revocation mark of the session."""

    async def revoked(session_id: str) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return bool(await redis_client.exists(tokens.revoked_sid_key(session_id)))
        except Exception as exc:  # Redis down, slow or refusing: the caller decides
            log.warning("revocation list unreachable: %s", type(exc).__name__)
            raise SessionUnknown from exc

    return revoked


class Authenticator:
    """Bearer header -> VerifiedToken, or a 401/503 EdgeError."""

    def __init__(self, keys: KeyRing, verify: TokenVerifier, sessions: SessionCheck) -> None:
        self._keys = keys
        self._verify = verify
        self._sessions = sessions

    async def authenticate(self, authorization: str | None, *, mutating: bool) -> VerifiedToken:
        token = bearer_token(authorization)
        try:
            verified = await self._verified(token)
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

    async def _verified(self, token: str) -> VerifiedToken:
        if not self._keys.jwks.keys and not await self._keys.refresh_on_demand():
            raise EdgeError(
                grpc.StatusCode.UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
                "cannot check access tokens yet: the signing keys are not loaded; "
                "retry shortly, the token may well be valid",
            )
        try:
            return self._verify(token, self._keys.jwks)
        except TokenRefused:
            kid = tokens.unverified_key_id(token)
            if kid is None or kid in self._keys.jwks.kids:
                raise
            if not await self._keys.refresh_on_demand() or kid not in self._keys.jwks.kids:
                raise
        # Identity had rotated its key: the refreshed ring knows the kid now.
        return self._verify(token, self._keys.jwks)


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
