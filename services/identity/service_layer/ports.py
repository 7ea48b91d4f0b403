"""What the identity use cases need from the world, as ports the adapters fill.

* `PasswordHasher`: argon2id (adapters/passwords.py). Hashing is slow by
  design, so its methods are coroutines that run off the event loop.
  `verify_dummy` costs what a real verification costs: sign-in runs it for
  an email nobody has, so the time of the answer does not say whether the
  email exists.
* `AccessTokenIssuer`: ES256 access tokens from the rotating key set
  (adapters/signing_keys.py, adapters/access_tokens.py) and the public keys
  that verify them.
* `PersonalDataVault`: AES-256-GCM for customers' personal data, bound to
  its row, and the HMAC blind index of emails (adapters/pii.py).
* `SessionRevocations`: tells resource servers at once that sessions ended
  (Redis, adapters/revocations.py). Raises DependencyUnavailable when it
  cannot; the use cases decide what that means.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.common.storage import Clock as Clock  # re-exported: part of this port
from services.common.storage import SystemClock as SystemClock
from services.identity.domain.model import PersonalData


class DependencyUnavailable(Exception):
    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def verify_dummy(self, password: str) -> None: ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Who an access token is for."""

    user_id: uuid.UUID
    customer_id: uuid.UUID | None
    roles: frozenset[str]
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str = field(repr=False)
    expires_in: int


class AccessTokenIssuer(Protocol):
    @property
    def lifetime_seconds(self) -> int: ...

    def issue(self, subject: TokenSubject, now: datetime) -> IssuedAccessToken: ...

    def public_keys(self, now: datetime) -> Sequence[Mapping[str, str]]:
        """JWKs (kty, crv, x, y, kid, use, alg) of every key that may still verify a token."""
        ...


@dataclass(frozen=True, slots=True)
class SealedPersonalData:
    """Ciphertexts of a customer's personal data, each bound to its row and column."""

    full_name: bytes
    email: bytes
    phone_number: bytes
    national_id: bytes

    def all(self) -> tuple[bytes, ...]:
        return (self.full_name, self.email, self.phone_number, self.national_id)


class PersonalDataVault(Protocol):
    @property
    def current_key_id(self) -> int: ...

    def seal(self, customer_id: uuid.UUID, data: PersonalData) -> SealedPersonalData: ...

    def open(self, customer_id: uuid.UUID, sealed: SealedPersonalData) -> PersonalData: ...

    def key_id_of(self, ciphertext: bytes) -> int: ...

    def email_index(self, normalized_email: str) -> bytes: ...


class SessionRevocations(Protocol):
    async def revoke(self, session_ids: Sequence[uuid.UUID]) -> None: ...


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a request came from, for the security events."""

    client_ip: str = ""
    request_id: str = ""
