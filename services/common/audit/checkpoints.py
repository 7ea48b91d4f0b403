"""Signed checkpoints of a chain's head, kept outside the database.

A checkpoint says "at `signed_at`, service S's audit chain had hash H at seq
N", signed with the service's Ed25519 key. The key lives in a file outside
the database (`<data_dir>/audit-keys/<service>.key`, 0600, made by the
launcher), checkpoints are appended one JSON object a line to a file outside
it (`<data_dir>/audit-checkpoints/<service>.jsonl`). Whoever rewrites the
database, even re-hashing the whole chain, cannot make it match a checkpoint
without the key; whoever deletes the newest rows leaves a head older than a
checkpoint.

The signed message is a fixed prefix and the checkpoint's fields as compact
JSON with sorted keys; `key_id` (the first 16 hex digits of the SHA-256 of
the raw public key) says which key signed, so a rotated key's checkpoints
stay verifiable with the old public key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncEngine

from . import store
from .chain import Anchor, Finding, Problem

log = logging.getLogger("bankmesh.audit")

PREFIX = b"bankmesh.audit.checkpoint.v1\n"
DEFAULT_INTERVAL_SECONDS = 60.0


class CheckpointKeyError(Exception):
    """A signing or public key that is missing, unreadable or readable by others."""


def key_files(key_dir: Path, service: str) -> tuple[Path, Path]:
    return key_dir / f"{service}.key", key_dir / f"{service}.pub"


def ensure_signing_key(key_dir: Path, service: str) -> Path:
    """The service's private key file, created (0600, in a 0700 directory) when missing."""
    private, public = key_files(key_dir, service)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if private.exists():
        load_signing_key(private)  # refuses a key others can read
        if not public.exists():
            _write(public, _public_pem(load_signing_key(private).public_key()), 0o644)
        return private
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(private, pem, 0o600)
    _write(public, _public_pem(key.public_key()), 0o644)
    return private


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        if path.stat().st_mode & 0o077:
            raise CheckpointKeyError(f"{path} is readable by others: chmod 600 it")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CheckpointKeyError(f"cannot read the audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointKeyError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CheckpointKeyError(f"cannot read the audit public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointKeyError(f"{path} is not an Ed25519 public key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    service: str
    seq: int
    hash: bytes
    signed_at: datetime
    key_id: str

    def payload(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "seq": self.seq,
            "hash": self.hash.hex(),
            "signed_at": self.signed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "key_id": self.key_id,
        }

    def message(self) -> bytes:
        return PREFIX + json.dumps(self.payload(), sort_keys=True, separators=(",", ":")).encode()


def sign(key: Ed25519PrivateKey, service: str, seq: int, head_hash: bytes) -> dict[str, Any]:
    checkpoint = Checkpoint(service, seq, head_hash, datetime.now(UTC), key_id(key.public_key()))
    signature = base64.b64encode(key.sign(checkpoint.message())).decode()
    return {**checkpoint.payload(), "signature": signature}


def append(path: Path, line: dict[str, Any]) -> None:
    """Append one checkpoint line and make it durable before returning."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def last_signed(path: Path) -> tuple[int, bytes] | None:
    """The seq and hash of the newest line of the checkpoint file (not verified)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            data = json.loads(line)
            return int(data["seq"]), bytes.fromhex(data["hash"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def read_verified(
    path: Path, public_key: Ed25519PublicKey, service: str
) -> tuple[list[Anchor], list[Finding]]:
    """The checkpoints whose signature verifies, and a finding for each that does not."""
    anchors: list[Anchor] = []
    bad: list[Finding] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return anchors, bad
    expected_kid = key_id(public_key)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            data = json.loads(line)
            checkpoint = Checkpoint(
                service=str(data["service"]),
                seq=int(data["seq"]),
                hash=bytes.fromhex(data["hash"]),
                signed_at=datetime.fromisoformat(str(data["signed_at"]).replace("Z", "+00:00")),
                key_id=str(data["key_id"]),
            )
            signature = base64.b64decode(data["signature"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(Finding(0, Problem.SIGNATURE, f"{where} is not a checkpoint: {exc}"))
            continue
        if checkpoint.service != service or checkpoint.key_id != expected_kid:
            bad.append(
                Finding(
                    checkpoint.seq,
                    Problem.SIGNATURE,
                    f"{where} is for {checkpoint.service} key {checkpoint.key_id}, not "
                    f"{service} key {expected_kid}",
                )
            )
            continue
        try:
            public_key.verify(signature, checkpoint.message())
        except InvalidSignature:
            bad.append(
                Finding(
                    checkpoint.seq,
                    Problem.SIGNATURE,
                    f"{where} (seq {checkpoint.seq}) has a signature that does not verify: "
                    f"the checkpoint file was edited",
                )
            )
            continue
        anchors.append(Anchor(checkpoint.seq, checkpoint.hash, data["signed_at"]))
    return anchors, bad


class Checkpointer:
    """Signs the head of one service's chain when it moved: every `interval` and at exit."""

    def __init__(
        self,
        engine: AsyncEngine,
        service: str,
        key_path: Path,
        checkpoint_file: Path,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self._engine = engine
        self._service = service
        self._key = load_signing_key(key_path)
        self._file = checkpoint_file
        self._interval = interval

    async def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current head unless the newest checkpoint already has it."""
        async with self._engine.connect() as connection:
            current = await store.head(connection)
        if current is None or last_signed(self._file) == current:
            return None
        line = sign(self._key, self._service, *current)
        await asyncio.to_thread(append, self._file, line)
        return line

    async def run(self) -> None:
        """The background loop; a failed round is logged and retried next time."""
        while True:
            await asyncio.sleep(self._interval)
            await self.quietly()

    async def quietly(self) -> None:
        """`checkpoint()`, logging instead of raising (the loop, and at shutdown)."""
        try:
            await self.checkpoint()
        except Exception:
            log.warning("could not write an audit checkpoint", exc_info=True)


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    tmp.replace(path)
