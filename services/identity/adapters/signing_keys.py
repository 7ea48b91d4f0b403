"""The keys that sign access tokens: a rotating local key set in a directory.

The directory (`BANKMESH_IDENTITY_KEY_DIR`, mode 0700) lives outside the
database and holds:

    keyset.json     {"keys": [{"kid", "created_at", "active_from", "retire_at",
                               "retired"}, ...]}
    <kid>.pem       the P-256 private key (PKCS#8), mode 0600, until retired

A key's life:

    next        published (GetJwks) but not signing yet: verifiers that cache
                the JWKS learn it before the first token signed with it arrives
    current     the newest key past its active_from: signs every new token
    previous    superseded, with a retire_at in the future: no longer signs, still
                published so the tokens it signed verify until they expire
    expired     its retire_at has passed: not published, so its tokens fail
    retired     `keys retire` deleted its private key; only its kid remains

`rotate` adds a key that signs from `activate_after` seconds on (600 by
default: twice the edge's JWKS refresh interval), and gives every earlier
key still in use a retire_at of that moment + overlap. The overlap must cover
a whole access-token lifetime plus clock skew (960 s at least), so no token
outlives the key that verifies it. Writers take a lock on the directory, and
files are replaced atomically, so replicas and the CLI can share it; services
re-read it when keyset.json changes (`RotatingKeySet`), and which key signs
is decided at each issue, so a next key takes over on time by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.tokens import (
    KID_PATTERN,
    MAX_ACCESS_TOKEN_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    public_jwk,
)

from .keyring import UnsafeKeyMaterial, check_private_file

log = logging.getLogger("bankmesh.identity.keys")

KEYSET_FILE = "keyset.json"
MIN_OVERLAP_SECONDS = MAX_ACCESS_TOKEN_SECONDS + MAX_CLOCK_SKEW_SECONDS
DEFAULT_OVERLAP_SECONDS = 2 * MAX_ACCESS_TOKEN_SECONDS + MAX_CLOCK_SKEW_SECONDS
# The edge refreshes its JWKS every 300 s; publish a new key for two of those first.
DEFAULT_ACTIVATE_AFTER_SECONDS = 600


@dataclass(frozen=True, slots=True)
class SigningKeyInfo:
    kid: str
    created_at: datetime
    active_from: datetime
    retire_at: datetime | None = None
    retired: bool = False

    def publishable(self, now: datetime) -> bool:
        return not self.retired and (self.retire_at is None or now < self.retire_at)

    def may_sign(self, now: datetime) -> bool:
        return self.publishable(now) and self.active_from <= now

    def to_json(self) -> dict[str, object]:
        return {
            "kid": self.kid,
            "created_at": self.created_at.isoformat(),
            "active_from": self.active_from.isoformat(),
            "retire_at": self.retire_at.isoformat() if self.retire_at else None,
            "retired": self.retired,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SigningKeyInfo:
        kid, retire = data.get("kid"), data.get("retire_at")
        created, active = data.get("created_at"), data.get("active_from")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise UnsafeKeyMaterial(f"{KEYSET_FILE}: a malformed kid")
        if (
            not isinstance(created, str)
            or not isinstance(active, str)
            or not (retire is None or isinstance(retire, str))
        ):
            raise UnsafeKeyMaterial(f"{KEYSET_FILE}: key {kid} has malformed times")
        return cls(
            kid,
            datetime.fromisoformat(created),
            datetime.fromisoformat(active),
            datetime.fromisoformat(retire) if retire else None,
            bool(data.get("retired", False)),
        )


def signer_info(infos: list[SigningKeyInfo], now: datetime) -> SigningKeyInfo | None:
    """The key that signs at `now`: the most recently activated one that may.

    `infos` are in the order they were added, which settles equal activation times.
    """
    candidates = [(info.active_from, n, info) for n, info in enumerate(infos) if info.may_sign(now)]
    return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


def key_state(info: SigningKeyInfo, infos: list[SigningKeyInfo], now: datetime) -> str:
    if info.retired:
        return "retired"
    if not info.publishable(now):
        return "expired"
    if info.active_from > now:
        return "next"
    signer = signer_info(infos, now)
    return "current" if signer is not None and signer.kid == info.kid else "previous"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoadedKeySet:
    """Every key not yet retired: private keys to sign with, public ones to publish."""

    keys: dict[str, tuple[ec.EllipticCurvePrivateKey, SigningKeyInfo]]

    def __repr__(self) -> str:
        return f"LoadedKeySet(kids={sorted(self.keys)})"

    def signer(self, now: datetime) -> SigningKey:
        info = signer_info([info for _, info in self.keys.values()], now)
        if info is None:
            raise UnsafeKeyMaterial("no signing key is active now")
        return SigningKey(info.kid, self.keys[info.kid][0])

    def public_jwks(self, now: datetime) -> list[dict[str, str]]:
        return [
            public_jwk(kid, key.public_key())
            for kid, (key, info) in sorted(self.keys.items())
            if info.publishable(now)
        ]


class KeyDirectory:
    """Reads and changes the key set on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def keyset_file(self) -> Path:
        return self.directory / KEYSET_FILE

    def infos(self) -> list[SigningKeyInfo]:
        if not self.keyset_file.exists():
            return []
        data = json.loads(self.keyset_file.read_text())
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise UnsafeKeyMaterial(f"{self.keyset_file}: not a key set")
        return [SigningKeyInfo.from_json(entry) for entry in keys]

    def initialize(self, now: datetime) -> bool:
        """The first signing key, unless there is one; True when made."""
        self._private_directory()
        with self._locked():
            if self.infos():
                return False
            self._write_keyset([self._new_key(now, now)])
        return True

    def rotate(
        self,
        now: datetime,
        overlap_seconds: int = DEFAULT_OVERLAP_SECONDS,
        activate_after_seconds: int = DEFAULT_ACTIVATE_AFTER_SECONDS,
    ) -> str:
        """A new key, published now and signing from `activate_after_seconds` on.

        The keys in use until then stay published `overlap_seconds` after it takes over.
        """
        if overlap_seconds < MIN_OVERLAP_SECONDS:
            raise ValueError(
                f"the overlap must cover an access token's life and clock skew: "
                f"at least {MIN_OVERLAP_SECONDS} seconds"
            )
        if activate_after_seconds < 0:
            raise ValueError("a key cannot start signing in the past")
        self._private_directory()
        with self._locked():
            active_from = now + timedelta(seconds=activate_after_seconds)
            retire_at = active_from + timedelta(seconds=overlap_seconds)
            infos = [
                replace(info, retire_at=retire_at)
                if info.retire_at is None and not info.retired
                else info
                for info in self.infos()
            ]
            new = self._new_key(now, active_from)
            self._write_keyset([*infos, new])
        log.info(
            "signing key %s added, signing from %s; earlier keys verify until %s",
            new.kid,
            active_from,
            retire_at,
        )
        return new.kid

    def retire(self, now: datetime) -> list[str]:
        """Delete the private keys of keys past their overlap; their kids."""
        with self._locked():
            infos = self.infos()
            retired = [i.kid for i in infos if not i.retired and not i.publishable(now)]
            for kid in retired:
                (self.directory / f"{kid}.pem").unlink(missing_ok=True)
            self._write_keyset([replace(i, retired=True) if i.kid in retired else i for i in infos])
        return retired

    def states(self, now: datetime) -> list[tuple[SigningKeyInfo, str]]:
        infos = self.infos()
        return [(info, key_state(info, infos, now)) for info in infos]

    def load(self, *, insecure_dev: bool) -> LoadedKeySet:
        if not self.directory.is_dir():
            raise UnsafeKeyMaterial(f"{self.directory}: no signing key directory")
        if not insecure_dev and self.directory.stat().st_mode & 0o077:
            raise UnsafeKeyMaterial(f"{self.directory}: others may read it; chmod 700 it")
        infos = [info for info in self.infos() if not info.retired]
        if not infos:
            raise UnsafeKeyMaterial(f"{self.keyset_file}: no signing key")
        return LoadedKeySet(
            {
                info.kid: (self._read_private_key(info.kid, insecure_dev=insecure_dev), info)
                for info in infos
            }
        )

    # -- files ---------------------------------------------------------------------------

    def _new_key(self, now: datetime, active_from: datetime) -> SigningKeyInfo:
        kid = f"{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(6)}"
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        return SigningKeyInfo(kid, now, active_from)

    def _read_private_key(self, kid: str, *, insecure_dev: bool) -> ec.EllipticCurvePrivateKey:
        path = self.directory / f"{kid}.pem"
        check_private_file(path, insecure_dev=insecure_dev)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise UnsafeKeyMaterial(f"{path}: access tokens are signed with P-256 keys")
        return key

    def _write_keyset(self, infos: list[SigningKeyInfo]) -> None:
        tmp = self.directory / f".{KEYSET_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"keys": [info.to_json() for info in infos]}, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(self.keyset_file)

    def _private_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class RotatingKeySet:
    """The loaded key set, re-read when keyset.json changes (checked every few seconds)."""

    def __init__(
        self,
        directory: KeyDirectory,
        *,
        insecure_dev: bool,
        check_interval: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._insecure_dev = insecure_dev
        self._interval = check_interval
        self._monotonic = monotonic
        self._loaded = directory.load(insecure_dev=insecure_dev)
        self._mtime = self._stamp()
        self._checked_at = monotonic()

    def __call__(self) -> LoadedKeySet:
        now = self._monotonic()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            stamp = self._stamp()
            if stamp != self._mtime:
                try:
                    self._loaded = self._directory.load(insecure_dev=self._insecure_dev)
                    self._mtime = stamp
                    log.info("signing keys reloaded: %s", self._loaded)
                except (UnsafeKeyMaterial, OSError, ValueError) as exc:
                    log.error("signing keys not reloaded, keeping the previous ones: %s", exc)
        return self._loaded

    def _stamp(self) -> tuple[int, int]:
        info = self._directory.keyset_file.stat()
        return info.st_ino, info.st_mtime_ns
