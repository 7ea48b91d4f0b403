"""Start-up refuses placeholder, short and exposed secrets outside development."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from mesh.config import ServiceEnvironment
from services.identity.adapters.keyring import (
    BLIND_INDEX_KEY_ENV,
    ReloadingKeyring,
    UnsafeKeyMaterial,
    add_data_key,
    create_file_keyring,
    load_env_keyring,
    load_file_keyring,
)
from services.identity.app import (
    IdentityConfig,
    UnsafeConfiguration,
    data_keyring,
    signing_keys,
)

PRODUCTION = ServiceEnvironment(name="identity")
DEVELOPMENT = ServiceEnvironment(name="identity", insecure_dev=True)


def keyring_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data-keys"
    create_file_keyring(directory)
    return directory


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.mark.parametrize("placeholder", [bytes(32), b"\xff" * 32, b"a" * 32])
def test_a_placeholder_data_key_file_stops_start_up(tmp_path: Path, placeholder: bytes) -> None:
    """A key of one repeated byte (all zeros first) is refused outside development."""
    directory = keyring_dir(tmp_path)
    (directory / "data-1.key").write_bytes(placeholder)
    with pytest.raises(UnsafeConfiguration, match="placeholder"):
        data_keyring(directory, {}, insecure_dev=False)


def test_a_placeholder_key_is_tolerated_in_development_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """BANKMESH_INSECURE_DEV=1 lets a zero key through and says so."""
    directory = keyring_dir(tmp_path)
    (directory / "blind-index.key").write_bytes(bytes(32))
    with caplog.at_level(logging.WARNING):
        data_keyring(directory, {}, insecure_dev=True)
    assert "placeholder" in caplog.text


@pytest.mark.parametrize("length", [0, 16, 31, 33])
@pytest.mark.parametrize("insecure_dev", [False, True])
def test_a_key_that_is_not_32_bytes_is_refused_even_in_development(
    tmp_path: Path, length: int, insecure_dev: bool
) -> None:
    """AES-256 needs exactly 32 bytes; a short key is a mistake in any mode."""
    directory = keyring_dir(tmp_path)
    (directory / "data-1.key").write_bytes(b"k" * length)
    with pytest.raises(UnsafeConfiguration, match="32 random bytes"):
        data_keyring(directory, {}, insecure_dev=insecure_dev)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_key_file_others_can_read_or_write_stops_start_up(tmp_path: Path, mode: int) -> None:
    """World- or group-accessible key files are refused outside development."""
    directory = keyring_dir(tmp_path)
    (directory / "data-1.key").chmod(mode)
    with pytest.raises(UnsafeConfiguration, match="chmod 600"):
        data_keyring(directory, {}, insecure_dev=False)


def test_a_world_readable_signing_key_stops_start_up(tmp_path: Path) -> None:
    """The same rule holds for the access-token signing keys."""
    keys = signing_keys(tmp_path / "keys", insecure_dev=False)
    (pem,) = (tmp_path / "keys").glob("*.pem")
    pem.chmod(0o644)
    assert keys().keys
    with pytest.raises(UnsafeConfiguration, match="signing keys refused"):
        signing_keys(tmp_path / "keys", insecure_dev=False)


def test_environment_keys_are_used_and_placeholders_refused() -> None:
    """BANKMESH_IDENTITY_DATA_KEY_<n> and the index key: base64 of 32 random bytes."""
    good = {
        "BANKMESH_IDENTITY_DATA_KEY_1": b64(bytes(range(32))),
        "BANKMESH_IDENTITY_DATA_KEY_2": b64(bytes(range(1, 33))).rstrip("="),
        BLIND_INDEX_KEY_ENV: base64.urlsafe_b64encode(bytes(range(2, 34))).decode(),
    }
    ring = load_env_keyring(good, insecure_dev=False)
    assert ring is not None and ring.current_data_key_id == 2
    for bad in ("changeme", b64(bytes(32)), b64(b"short"), ""):
        with pytest.raises(UnsafeKeyMaterial):
            load_env_keyring({**good, "BANKMESH_IDENTITY_DATA_KEY_1": bad}, insecure_dev=False)


def test_half_an_environment_keyring_is_refused() -> None:
    """Data keys without the index key (or the reverse) is a misconfiguration."""
    with pytest.raises(UnsafeKeyMaterial, match="both"):
        load_env_keyring(
            {"BANKMESH_IDENTITY_DATA_KEY_1": b64(bytes(range(32)))}, insecure_dev=False
        )
    assert load_env_keyring({}, insecure_dev=False) is None


def test_key_directories_have_no_default_outside_development() -> None:
    """Without BANKMESH_IDENTITY_KEY_DIR a production start stops; development has defaults."""
    with pytest.raises(UnsafeConfiguration, match="BANKMESH_IDENTITY_KEY_DIR"):
        IdentityConfig.from_env(PRODUCTION, {})
    with pytest.raises(UnsafeConfiguration, match="BANKMESH_IDENTITY_DATA_KEYS"):
        IdentityConfig.from_env(PRODUCTION, {"BANKMESH_IDENTITY_KEY_DIR": "/k"})
    config = IdentityConfig.from_env(
        PRODUCTION, {"BANKMESH_IDENTITY_KEY_DIR": "/k", "BANKMESH_IDENTITY_DATA_KEYS": "/d"}
    )
    assert (config.key_dir, config.data_key_dir) == (Path("/k"), Path("/d"))
    assert IdentityConfig.from_env(DEVELOPMENT, {}).key_dir.name == "identity-keys"


def test_an_access_token_lifetime_above_fifteen_minutes_is_refused(tmp_path: Path) -> None:
    """BANKMESH_IDENTITY_ACCESS_TOKEN_SECONDS=3600 stops the service."""
    from services.identity.adapters.access_tokens import JwtAccessTokens

    keys = signing_keys(tmp_path / "keys", insecure_dev=False)
    with pytest.raises(ValueError, match="900"):
        JwtAccessTokens(keys, issuer="i", audience="a", lifetime_seconds=3600)


def test_a_reloading_keyring_sees_a_new_data_key_from_another_process(tmp_path: Path) -> None:
    """A replica meeting a key id it lacks reloads at once; otherwise every few seconds."""
    directory = keyring_dir(tmp_path)
    clock = [0.0]
    ring = ReloadingKeyring(
        lambda: load_file_keyring(directory, insecure_dev=False),
        interval=5.0,
        monotonic=lambda: clock[0],
    )
    assert ring.current_data_key_id == 1
    add_data_key(directory)
    assert len(ring.data_key(2)) == 32  # unknown id: reloaded on the spot
    add_data_key(directory)
    assert ring.current_data_key_id == 2
    clock[0] = 6.0
    assert ring.current_data_key_id == 3


def test_a_reload_that_finds_an_unsafe_key_keeps_the_keys_in_use(tmp_path: Path) -> None:
    """Someone chmod-ing a key file wrong does not take the running service down."""
    directory = keyring_dir(tmp_path)
    ring = ReloadingKeyring(lambda: load_file_keyring(directory, insecure_dev=False), interval=0)
    key = ring.data_key(1)
    (directory / "data-1.key").chmod(0o644)
    assert ring.current_data_key_id == 1
    assert ring.data_key(1) == key
