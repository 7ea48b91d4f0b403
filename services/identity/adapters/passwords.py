"""Passwords: argon2id through argon2-cffi, off the event loop.

The default parameters are RFC 9106's second recommendation (argon2id,
t=3, m=64 MiB, p=4), argon2-cffi's own default: about 50 ms and 64 MiB per
hash on a current server, which is what makes guessing expensive. They are
configurable (`Argon2Settings.from_env`); a hash made with other parameters
still verifies, and is replaced by one with the current parameters at the
next successful sign-in (`needs_rehash`).

`verify_dummy` verifies against the hash of a random password made at start
with the same parameters, so an unknown email costs the same time as a
wrong password.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY


@dataclass(frozen=True, slots=True)
class Argon2Settings:
    time_cost: int = RFC_9106_LOW_MEMORY.time_cost
    memory_kib: int = RFC_9106_LOW_MEMORY.memory_cost
    parallelism: int = RFC_9106_LOW_MEMORY.parallelism

    def __post_init__(self) -> None:
        # OWASP's floor for argon2id: 19 MiB with t=2; anything weaker is a mistake
        # outside tests (which build Argon2Passwords with their own parameters).
        if self.memory_kib < 19 * 1024 or self.time_cost < 2 or self.parallelism < 1:
            raise ValueError("argon2id needs at least 19 MiB of memory and 2 passes")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Argon2Settings:
        default = cls()
        return cls(
            time_cost=int(environ.get("BANKMESH_IDENTITY_ARGON2_TIME_COST", default.time_cost)),
            memory_kib=int(environ.get("BANKMESH_IDENTITY_ARGON2_MEMORY_KIB", default.memory_kib)),
            parallelism=int(
                environ.get("BANKMESH_IDENTITY_ARGON2_PARALLELISM", default.parallelism)
            ),
        )

    def parameters(self) -> argon2.Parameters:
        return argon2.Parameters(
            type=argon2.Type.ID,
            version=RFC_9106_LOW_MEMORY.version,
            salt_len=RFC_9106_LOW_MEMORY.salt_len,
            hash_len=RFC_9106_LOW_MEMORY.hash_len,
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
        )


class Argon2Passwords:
    def __init__(self, parameters: argon2.Parameters | None = None) -> None:
        parameters = parameters or Argon2Settings().parameters()
        if parameters.type is not argon2.Type.ID:
            raise ValueError("passwords are hashed with argon2id")
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        await asyncio.to_thread(self._verify, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
