"""Sessions and their refresh tokens: rotation, reuse detection, an absolute lifetime.

A sign-in starts a `Session`: the family of refresh tokens that descend from
it. Its id is the `sid` claim of every access token issued in it, so ending
the session ends those too (see mesh.tokens.session_revoked).

Refresh tokens are opaque: "bmrt_" and 32 random bytes (256 bits) in
base64url. Only their SHA-256 is stored. A password needs a slow, salted KDF
because people choose guessable ones; a 256-bit random value cannot be
guessed, so one fast hash already makes a stolen table useless, and it keeps
the lookup a plain index probe. (The prefix lets secret scanners spot a
leaked token.)

Each refresh spends its token and hands out a new one. Presented again, a
spent token means two parties hold the family (a thief and its owner, and we
cannot tell which is which), so the whole session is revoked: RFC 9700
§4.14.2. Two refreshes racing with one token are the same case: one wins,
the other is a reuse. A session also ends, whatever is refreshed, at its
absolute expiry (30 days by default).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

REFRESH_TOKEN_PREFIX = "bmrt_"  # noqa: S105 - a prefix for secret scanners, not a secret
REFRESH_TOKEN_BYTES = 32
_MAX_PRESENTED_CHARS = 256


class EndReason(enum.StrEnum):
    LOGOUT = "logout"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - a reason, not a secret
    ROLE_REVOKED = "role_revoked"


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    expires_at: datetime  # absolute: refreshing never extends it
    ended_at: datetime | None = None
    end_reason: str = ""

    def seconds_left(self, now: datetime) -> int:
        return max(0, int((self.expires_at - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: uuid.UUID
    session_id: uuid.UUID
    token_hash: bytes
    created_at: datetime
    used_at: datetime | None = None


class Verdict(enum.Enum):
    ROTATE = "rotate"
    ENDED = "ended"  # logged out or revoked before: TOKEN_INVALID
    EXPIRED = "expired"  # past the absolute lifetime: TOKEN_EXPIRED
    REUSED = "reused"  # a spent token again: end the session


def judge(session: Session, token: RefreshToken, now: datetime) -> Verdict:
    """What a refresh with `token` leads to."""
    if session.ended_at is not None:
        return Verdict.ENDED
    if now >= session.expires_at:
        return Verdict.EXPIRED
    if token.used_at is not None:
        return Verdict.REUSED
    return Verdict.ROTATE


def new_refresh_token() -> tuple[str, bytes]:
    """A fresh refresh token and the hash to store for it."""
    raw = secrets.token_bytes(REFRESH_TOKEN_BYTES)
    token = REFRESH_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def plausible_refresh_token(token: str) -> bool:
    """Cheap shape check, so junk never reaches the database."""
    return token.startswith(REFRESH_TOKEN_PREFIX) and len(token) <= _MAX_PRESENTED_CHARS
