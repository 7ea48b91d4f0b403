"""Verifying bankmesh access tokens, and asking whether their session was ended.

The identity service signs access tokens; anything that accepts them (the
edge first of all) verifies them with `verify_access_token` against the
public keys identity publishes (`GetJwks`, parsed into a `Jwks`). This module
is a pure library: it never calls a service, never reads a file and never
touches a database, so a token's header can only ever *select* from the key
set the caller already holds.

An access token is a compact JWS (RFC 7515) with these parts (RFC 9068):

    header   alg "ES256", typ "at+jwt", kid (one of the JWKS's key ids)
    claims   iss, aud, sub, iat, nbf, exp (exp - iat <= 900 s), jti,
             sid (the session), cid (customer id, "" for staff), roles

`verify_access_token` refuses, with `TokenRejected(reason)`:

* anything that is not three non-empty base64url parts, or whose header or
  claims are not one JSON object (duplicate names included);
* any `alg` but exactly "ES256" ("none" in any casing, HS256 made with the
  public key as an HMAC secret, RS256, ...), a `crit` or `b64` header;
* a `typ` other than at+jwt (a refresh token or an end-user assertion is not
  an access token);
* a `kid` that is not a plain identifier or not in the key set; `jku`,
  `x5u`, `jwk` and `x5c` are never read, let alone fetched;
* a signature that is not 64 bytes with 0 < r, s < n (the all-zero
  signature of CVE-2022-21449 and its kind), or that does not verify;
* missing iss/aud/sub/iat/exp/jti/sid, a wrong iss or aud, an iat or nbf more
  than the skew (<= 60 s) ahead, an exp in the past (TOKEN_EXPIRED), or a
  lifetime beyond 900 s.

Every refusal is TOKEN_INVALID except a genuine, expired token, which is
TOKEN_EXPIRED; the signature is checked before any claim, so nobody learns
anything about a forged token's claims.

Logout ends a session at once: identity writes
``bankmesh:identity:revoked-sid:<sid>`` in Redis with a TTL of at least the
access-token lifetime (plus skew), and `session_revoked` asks for it. What
happens when Redis does not answer is the caller's choice (`FailMode`):
CLOSED (the default) treats the session as revoked, so a logged-out token
never works, at the price of refusing everyone while Redis is down; OPEN lets
valid tokens through, so an outage costs no availability but a logged-out
token may work until it expires (at most 15 minutes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import redis.asyncio
import redis.exceptions
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.api_jws import PyJWS

from mesh.context import EndUser

if TYPE_CHECKING:
    from bankmesh.identity.v1.identity_service_pb2 import GetJwksResponse

log = logging.getLogger("bankmesh.tokens")

ALGORITHM = "ES256"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JOSE typ value (RFC 9068), not a secret
# RFC 9068 §4: the media type may also be spelled out in full.
_ACCEPTED_TYPES = frozenset({ACCESS_TOKEN_TYPE, "application/at+jwt"})
MAX_ACCESS_TOKEN_SECONDS = 900
MAX_CLOCK_SKEW_SECONDS = 60

DEFAULT_ISSUER = "https://identity.bankmesh.local"
DEFAULT_AUDIENCE = "https://api.bankmesh.local"

REVOKED_SID_PREFIX = "bankmesh:identity:revoked-sid:"
# Long enough for every access token of the session to have expired.
REVOKED_SID_TTL_SECONDS = MAX_ACCESS_TOKEN_SECONDS + MAX_CLOCK_SKEW_SECONDS

# gRPC metadata the edge sets to the client's address (identity records it in
# its security events). Only the edge's value is trusted.
CLIENT_IP_HEADER = "x-bankmesh-client-ip"

# A kid names a key; it is never a path, a query or a URL.
KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_MAX_TOKEN_CHARS = 8192
# The order of the P-256 group: valid ECDSA signatures have 0 < r, s < n.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "sid")


class Reason(enum.StrEnum):
    TOKEN_INVALID = "TOKEN_INVALID"  # noqa: S105 - an ErrorReason name, not a secret
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # noqa: S105 - an ErrorReason name, not a secret


class TokenRejected(Exception):
    """The token is not a valid access token for us; `reason` is TOKEN_INVALID or TOKEN_EXPIRED.

    `detail` is for logs; clients should be told only the reason.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _invalid(detail: str) -> TokenRejected:
    return TokenRejected(Reason.TOKEN_INVALID, detail)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    subject: str  # the user id
    customer_id: str  # "" for staff
    roles: frozenset[str]
    session_id: str  # revoked together at logout: see session_revoked
    token_id: str
    issuer: str
    audience: tuple[str, ...]
    issued_at: int
    expires_at: int
    key_id: str

    def end_user(self) -> EndUser:
        """The person, as services expect them in mesh.context.end_user."""
        return EndUser(self.subject, self.customer_id, self.roles)


# -- the key set -----------------------------------------------------------------------


class InvalidJwks(ValueError):
    """A key set that cannot be trusted as a whole; keep the previous one."""


@dataclass(frozen=True, slots=True)
class Jwks:
    """The public keys that verify access tokens, by kid (EC P-256 only)."""

    keys: Mapping[str, ec.EllipticCurvePublicKey]

    @classmethod
    def from_dicts(cls, keys: Iterable[Mapping[str, Any]]) -> Jwks:
        parsed: dict[str, ec.EllipticCurvePublicKey] = {}
        for entry in keys:
            kid = entry.get("kid")
            if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
                raise InvalidJwks("every key needs a kid of letters, digits, '-' or '_'")
            if kid in parsed:
                raise InvalidJwks(f"kid {kid} appears twice")
            if entry.get("kty") != "EC" or entry.get("crv") != "P-256":
                raise InvalidJwks(f"key {kid}: only EC P-256 keys verify access tokens")
            if entry.get("alg", ALGORITHM) not in ("", ALGORITHM):
                raise InvalidJwks(f"key {kid}: alg must be {ALGORITHM}")
            if entry.get("use", "sig") not in ("", "sig"):
                raise InvalidJwks(f"key {kid}: use must be sig")
            if "d" in entry:
                raise InvalidJwks(f"key {kid}: a private key has no place in a JWKS")
            try:
                key = ECAlgorithm.from_jwk(
                    {"kty": "EC", "crv": "P-256", "x": entry.get("x"), "y": entry.get("y")}
                )
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                raise InvalidJwks(f"key {kid}: not a P-256 public key: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidJwks(f"key {kid}: not a public key")
            parsed[kid] = key
        return cls(parsed)

    @classmethod
    def from_json(cls, document: str | bytes | Mapping[str, Any]) -> Jwks:
        """From a JWKS document: {"keys": [...]}, as text or already parsed."""
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise InvalidJwks(f"not JSON: {exc}") from exc
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise InvalidJwks('a JWKS is an object with a "keys" list')
        entries = document["keys"]
        if not all(isinstance(entry, Mapping) for entry in entries):
            raise InvalidJwks("every key is a JSON object")
        return cls.from_dicts(entries)

    @classmethod
    def from_proto(cls, response: GetJwksResponse) -> Jwks:
        """From identity's GetJwks answer."""
        return cls.from_dicts(
            {
                "kty": k.kty,
                "crv": k.crv,
                "x": k.x,
                "y": k.y,
                "kid": k.kid,
                "use": k.use,
                "alg": k.alg,
            }
            for k in response.keys
        )

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self.keys)

    def to_json(self) -> str:
        """The set as a JWKS document (for caching it)."""
        return json.dumps({"keys": [public_jwk(kid, key) for kid, key in self.keys.items()]})


def public_jwk(kid: str, key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK (RFC 7517) of a P-256 public key, as published by GetJwks."""
    jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": str(jwk["x"]),
        "y": str(jwk["y"]),
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


# -- verification ----------------------------------------------------------------------


def verify_access_token(
    token: str,
    jwks: Jwks,
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
    leeway: int = MAX_CLOCK_SKEW_SECONDS,
) -> AccessClaims:
    """The claims of `token` if it is a valid access token for `audience`; else TokenRejected.

    `now` is POSIX seconds (default: the system clock); `leeway` the clock skew
    allowed on exp, nbf and iat, at most 60 seconds.
    """
    if not 0 <= leeway <= MAX_CLOCK_SKEW_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_CLOCK_SKEW_SECONDS} seconds")
    now = time.time() if now is None else now
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise _invalid("not a token")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise _invalid("not a signed compact JWT (three non-empty parts)")
    header = _json_object(_b64decode(parts[0]), "header")

    if header.get("alg") != ALGORITHM:
        raise _invalid(f"alg must be {ALGORITHM}")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
        raise _invalid(f"typ must be {ACCESS_TOKEN_TYPE}")
    if "crit" in header or "b64" in header:
        raise _invalid("crit and b64 headers are not understood")
    # jku, x5u, jwk and x5c are deliberately never looked at: the key comes
    # from the local set, chosen by kid, or not at all.
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise _invalid("kid missing or malformed")
    key = jwks.keys.get(kid)
    if key is None:
        raise _invalid("unknown kid")

    signature = _b64decode(parts[2])
    if len(signature) != 64:
        raise _invalid("an ES256 signature is 64 bytes")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        raise _invalid("signature out of range")
    try:
        decoded = PyJWS().decode_complete(token, key, algorithms=[ALGORITHM])
    except jwt.PyJWTError as exc:
        raise _invalid(f"signature: {exc}") from exc

    claims = _json_object(decoded["payload"], "claims")
    return _check_claims(claims, kid, issuer=issuer, audience=audience, now=now, leeway=leeway)


def unverified_key_id(token: str) -> str | None:
    """The `kid` a token's header names, if well formed; nothing about the token is verified.

    For a key set that may be behind its issuer: a kid it does not know yet
    is a reason to refresh the set (rate-limited), never to fetch a key the
    token points at.
    """
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    head, dot, _ = token.partition(".")
    if not dot:
        return None
    try:
        kid = _json_object(_b64decode(head), "header").get("kid")
    except TokenRejected:
        return None
    return kid if isinstance(kid, str) and KID_PATTERN.fullmatch(kid) else None


def _check_claims(
    claims: Mapping[str, Any], kid: str, *, issuer: str, audience: str, now: float, leeway: int
) -> AccessClaims:
    missing = [name for name in _REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise _invalid(f"missing claims: {', '.join(missing)}")
    if claims["iss"] != issuer:
        raise _invalid("wrong issuer")
    aud = claims["aud"]
    audiences = (aud,) if isinstance(aud, str) else aud
    if not isinstance(audiences, list | tuple) or not all(isinstance(a, str) for a in audiences):
        raise _invalid("aud must be a string or a list of strings")
    if audience not in audiences:
        raise _invalid("wrong audience")
    for name in ("sub", "jti", "sid"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise _invalid(f"{name} must be a non-empty string")
    cid = claims.get("cid", "")
    roles = claims.get("roles", [])
    if not isinstance(cid, str):
        raise _invalid("cid must be a string")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise _invalid("roles must be a list of strings")

    iat, exp = _number(claims, "iat"), _number(claims, "exp")
    nbf = _number(claims, "nbf") if "nbf" in claims else iat
    if iat > now + leeway or nbf > now + leeway:
        raise _invalid("issued or valid only in the future")
    if not iat < exp <= iat + MAX_ACCESS_TOKEN_SECONDS:
        raise _invalid(f"an access token lives at most {MAX_ACCESS_TOKEN_SECONDS} seconds")
    if now >= exp + leeway:
        raise TokenRejected(Reason.TOKEN_EXPIRED, "expired")

    return AccessClaims(
        subject=claims["sub"],
        customer_id=cid,
        roles=frozenset(roles),
        session_id=claims["sid"],
        token_id=claims["jti"],
        issuer=claims["iss"],
        audience=tuple(audiences),
        issued_at=int(iat),
        expires_at=int(exp),
        key_id=kid,
    )


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python, and NaN compares false with everything.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"{name} must be a number of seconds")
    return float(value)


def _b64decode(part: str) -> bytes:
    """Strict base64url without padding: a lenient decoder would accept garbage as a signature."""
    if not _BASE64URL.fullmatch(part) or len(part) % 4 == 1:
        raise _invalid("not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _invalid("not base64url") from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):
            raise _invalid(f"{what} names a member twice")
        return dict(pairs)

    try:
        value = json.loads(raw, object_pairs_hook=no_duplicates)
    except TokenRejected:
        raise
    except ValueError as exc:
        raise _invalid(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not a JSON object")
    return value


# -- revoked sessions ------------------------------------------------------------------


class FailMode(enum.StrEnum):
    """What `session_revoked` answers when Redis cannot: see the module docstring."""

    CLOSED = "closed"
    OPEN = "open"


def revoked_sid_key(session_id: str) -> str:
    return f"{REVOKED_SID_PREFIX}{session_id}"


async def session_revoked(
    redis_client: redis.asyncio.Redis,
    sid: str,
    *,
    fail_mode: FailMode = FailMode.CLOSED,
    wait_seconds: float = 0.5,
) -> bool:
    """Whether the session `sid` was ended (logout, refresh-token reuse, a revoked role).

    Call it after `verify_access_token` with `claims.session_id`. When Redis
    fails or takes longer than `wait_seconds`, the answer is True under
    FailMode.CLOSED and False under FailMode.OPEN.
    """
    try:
        async with asyncio.timeout(wait_seconds):
            found = await redis_client.exists(revoked_sid_key(sid))
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        log.warning(
            "revocation list unreachable (%s); failing %s",
            type(exc).__name__,
            fail_mode.value,
        )
        return fail_mode is FailMode.CLOSED
    return bool(found)
