"""Keys for personal data, kept outside the database, and the checks they must pass.

A `Keyring` holds numbered AES-256 data keys (the highest number encrypts new
data; every number still in the ring decrypts) and one blind-index key (HMAC
of emails). It is a port: the two sources below produce a `StaticKeyring`,
and a KMS-backed keyring (data keys unwrapped by a KMS at start) would
implement the same three members.

Sources:

* a directory (`BANKMESH_IDENTITY_DATA_KEYS`): ``data-<n>.key`` and
  ``blind-index.key``, 32 raw random bytes each, mode 0600 in a 0700
  directory. `create_file_keyring` makes the first ones; `add_data_key` the
  next (``bankmesh keys rotate-data``).
* the environment: ``BANKMESH_IDENTITY_DATA_KEY_<n>`` and
  ``BANKMESH_IDENTITY_BLIND_INDEX_KEY``, base64 of 32 bytes, for platforms
  that inject secrets as variables. When any is set, the directory is not read.

Outside development (`BANKMESH_INSECURE_DEV=1`) a key is refused when it is
a placeholder (all one byte value, such as all zeros), or when its file can be
read or written by anyone but its owner. A key that is not exactly 32 bytes
is refused always: it cannot be an AES-256 key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hmac
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("bankmesh.identity.keys")

KEY_BYTES = 32
MAX_KEY_ID = 2**32 - 1
DATA_KEY_ENV_PREFIX = "BANKMESH_IDENTITY_DATA_KEY_"
BLIND_INDEX_KEY_ENV = "BANKMESH_IDENTITY_BLIND_INDEX_KEY"
BLIND_INDEX_FILE = "blind-index.key"
_DATA_KEY_FILE = re.compile(r"data-([0-9]{1,10})\.key")


class UnsafeKeyMaterial(ValueError):
    """A key the service must not start with (placeholder, too short, readable by others)."""


class Keyring(Protocol):
    @property
    def current_data_key_id(self) -> int: ...

    def data_key(self, key_id: int) -> bytes:
        """The data key numbered `key_id`; KeyError when the ring has none."""
        ...

    def blind_index_key(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StaticKeyring:
    data_keys: Mapping[int, bytes]
    index_key: bytes

    def __post_init__(self) -> None:
        if not self.data_keys:
            raise UnsafeKeyMaterial("the keyring has no data key")

    def __repr__(self) -> str:
        return f"StaticKeyring(data_key_ids={sorted(self.data_keys)})"

    @property
    def current_data_key_id(self) -> int:
        return max(self.data_keys)

    def data_key(self, key_id: int) -> bytes:
        return self.data_keys[key_id]

    def blind_index_key(self) -> bytes:
        return self.index_key


class ReloadingKeyring:
    """A keyring re-read from its source, so `keys rotate-data` reaches running replicas.

    It reloads every `interval` seconds, and at once when asked for a key id
    it lacks (another replica may already write with a newer key). A reload
    that fails (a key made world-readable, say) keeps the keys it had and is
    logged; the blind-index key never changes while the process runs.
    """

    def __init__(
        self,
        load: Callable[[], StaticKeyring],
        interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._interval = interval
        self._monotonic = monotonic
        self._ring = load()
        self._loaded_at = monotonic()

    def __repr__(self) -> str:
        return f"ReloadingKeyring({self._ring!r})"

    @property
    def current_data_key_id(self) -> int:
        if self._monotonic() - self._loaded_at >= self._interval:
            self._reload()
        return self._ring.current_data_key_id

    def data_key(self, key_id: int) -> bytes:
        if key_id not in self._ring.data_keys:
            self._reload()
        return self._ring.data_key(key_id)

    def blind_index_key(self) -> bytes:
        return self._ring.index_key

    def _reload(self) -> None:
        self._loaded_at = self._monotonic()
        try:
            ring = self._load()
        except (UnsafeKeyMaterial, OSError) as exc:
            log.error("data keys not reloaded, keeping the previous ones: %s", exc)
            return
        if not hmac.compare_digest(ring.index_key, self._ring.index_key):
            log.error("the blind-index key changed on disk; keeping the one in use")
            ring = StaticKeyring(ring.data_keys, self._ring.index_key)
        if ring.current_data_key_id != self._ring.current_data_key_id:
            log.info("data key %d now encrypts new personal data", ring.current_data_key_id)
        self._ring = ring


def check_key(name: str, key: bytes, *, insecure_dev: bool) -> None:
    if len(key) != KEY_BYTES:
        raise UnsafeKeyMaterial(f"{name}: a key is {KEY_BYTES} random bytes, not {len(key)}")
    if len(set(key)) == 1:
        problem = f"{name}: a placeholder key (every byte {key[0]:#04x})"
        if not insecure_dev:
            raise UnsafeKeyMaterial(problem)
        log.warning("%s: accepted only because BANKMESH_INSECURE_DEV=1", problem)


def check_private_file(path: Path, *, insecure_dev: bool) -> None:
    """A secret's file must be a regular file only its owner can read or write."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeKeyMaterial(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        problem = f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read or write it"
        if not insecure_dev:
            raise UnsafeKeyMaterial(f"{problem}; chmod 600 it")
        log.warning("%s: accepted only because BANKMESH_INSECURE_DEV=1", problem)


# -- the directory -----------------------------------------------------------------------


def load_file_keyring(directory: Path, *, insecure_dev: bool) -> StaticKeyring:
    if not directory.is_dir():
        raise UnsafeKeyMaterial(f"{directory}: no data key directory")
    data_keys: dict[int, bytes] = {}
    for path in directory.iterdir():
        match = _DATA_KEY_FILE.fullmatch(path.name)
        if match is None:
            continue
        key_id = int(match.group(1))
        if not 1 <= key_id <= MAX_KEY_ID:
            raise UnsafeKeyMaterial(f"{path}: key ids run from 1 to {MAX_KEY_ID}")
        data_keys[key_id] = _read_key(path, insecure_dev=insecure_dev)
    if not data_keys:
        raise UnsafeKeyMaterial(f"{directory}: no data-<n>.key file")
    index_path = directory / BLIND_INDEX_FILE
    if not index_path.exists():
        raise UnsafeKeyMaterial(f"{directory}: no {BLIND_INDEX_FILE}")
    return StaticKeyring(data_keys, _read_key(index_path, insecure_dev=insecure_dev))


def _read_key(path: Path, *, insecure_dev: bool) -> bytes:
    check_private_file(path, insecure_dev=insecure_dev)
    key = path.read_bytes()
    check_key(str(path), key, insecure_dev=insecure_dev)
    return key


def create_file_keyring(directory: Path) -> bool:
    """The first data key and the blind-index key, unless the directory has keys; True if made."""
    _private_directory(directory)
    with _locked(directory):
        if _data_key_ids(directory) or (directory / BLIND_INDEX_FILE).exists():
            return False
        _write_key(directory / BLIND_INDEX_FILE)
        _write_key(directory / "data-1.key")
    log.info("created data key 1 and the blind-index key in %s", directory)
    return True


def add_data_key(directory: Path) -> int:
    """A new data key numbered one above the highest; new writes use it from now on."""
    if not directory.is_dir():
        raise UnsafeKeyMaterial(f"{directory}: no data key directory")
    with _locked(directory):
        key_id = max(_data_key_ids(directory), default=0) + 1
        if key_id > MAX_KEY_ID:
            raise UnsafeKeyMaterial("no key ids left")
        _write_key(directory / f"data-{key_id}.key")
    return key_id


def data_key_ids(directory: Path) -> list[int]:
    return sorted(_data_key_ids(directory))


def _data_key_ids(directory: Path) -> set[int]:
    ids = set()
    for path in directory.iterdir():
        match = _DATA_KEY_FILE.fullmatch(path.name)
        if match:
            ids.add(int(match.group(1)))
    return ids


def _private_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)


def _write_key(path: Path) -> None:
    # O_EXCL: a key that exists is never overwritten (its data would be lost).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_bytes(KEY_BYTES))
        file.flush()
        os.fsync(file.fileno())


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time (replicas and the CLI may share the directory)."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- the environment -----------------------------------------------------------------------


def load_env_keyring(environ: Mapping[str, str], *, insecure_dev: bool) -> StaticKeyring | None:
    """The keyring from environment variables; None when none is set."""
    data_keys: dict[int, bytes] = {}
    for name, value in environ.items():
        if not name.startswith(DATA_KEY_ENV_PREFIX):
            continue
        suffix = name.removeprefix(DATA_KEY_ENV_PREFIX)
        if not suffix.isdecimal() or not 1 <= int(suffix) <= MAX_KEY_ID:
            raise UnsafeKeyMaterial(f"{name}: the suffix is the key id, 1 to {MAX_KEY_ID}")
        data_keys[int(suffix)] = _env_key(name, value, insecure_dev=insecure_dev)
    index_value = environ.get(BLIND_INDEX_KEY_ENV)
    if not data_keys and index_value is None:
        return None
    if not data_keys or index_value is None:
        raise UnsafeKeyMaterial(
            f"set both {DATA_KEY_ENV_PREFIX}<n> and {BLIND_INDEX_KEY_ENV}, or neither"
        )
    return StaticKeyring(
        data_keys, _env_key(BLIND_INDEX_KEY_ENV, index_value, insecure_dev=insecure_dev)
    )


def _env_key(name: str, value: str, *, insecure_dev: bool) -> bytes:
    # Standard or URL-safe alphabet, padded or not.
    text = value.strip().rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise UnsafeKeyMaterial(f"{name}: not base64 of {KEY_BYTES} random bytes")
    check_key(name, key, insecure_dev=insecure_dev)
    return key


def encode_key(key: bytes) -> str:
    """How a key is written into an environment variable."""
    return base64.b64encode(key).decode()
