"""Personal data at rest: the AES-256-GCM envelope, its row binding, keys and the blind index."""

from __future__ import annotations

import hashlib
import stat
import uuid
from pathlib import Path

import pytest

from services.identity.adapters.keyring import (
    StaticKeyring,
    add_data_key,
    create_file_keyring,
    load_file_keyring,
)
from services.identity.adapters.pii import (
    CUSTOMERS_TABLE,
    AesGcmVault,
    Envelope,
    UndecryptableData,
    place,
)
from services.identity.domain.model import canonical_email, personal_data

ALICE = personal_data("Alice Liddell", "alice@example.com", "+44 20 7946 0000", "AB123456C")


def keyring(*key_ids: int) -> StaticKeyring:
    return StaticKeyring(
        {key_id: bytes([key_id]) * 16 + bytes(range(16)) for key_id in key_ids or (1,)},
        bytes(range(32)),
    )


def row_place(row_id: uuid.UUID, column: str = "email") -> str:
    return place(CUSTOMERS_TABLE, column, row_id)


def test_an_envelope_is_version_key_id_nonce_and_ciphertext_with_tag() -> None:
    """Layout: 0x01, 4-byte key id, 12-byte nonce, ciphertext + 16-byte tag."""
    envelope = Envelope(keyring(1, 7))
    sealed = envelope.encrypt(b"alice@example.com", row_place(uuid.uuid4()))
    assert sealed[0] == 1
    assert int.from_bytes(sealed[1:5], "big") == 7 == envelope.key_id_of(sealed)
    assert len(sealed) == 1 + 4 + 12 + len(b"alice@example.com") + 16
    assert b"alice" not in sealed


def test_every_encryption_gets_a_fresh_nonce() -> None:
    """The same value in the same place encrypts differently every time (no nonce reuse)."""
    envelope = Envelope(keyring())
    where = row_place(uuid.uuid4())
    sealed = [envelope.encrypt(b"same", where) for _ in range(2000)]
    assert len({s[5:17] for s in sealed}) == 2000
    assert all(envelope.decrypt(s, where) == b"same" for s in sealed[:10])


def test_a_ciphertext_copied_to_another_row_does_not_decrypt() -> None:
    """The row id is authenticated: Mallory cannot move Alice's email into her own row."""
    envelope = Envelope(keyring())
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    sealed = envelope.encrypt(b"alice@example.com", row_place(alice))
    with pytest.raises(UndecryptableData, match="copied"):
        envelope.decrypt(sealed, row_place(mallory))


def test_a_ciphertext_copied_to_another_column_does_not_decrypt() -> None:
    """The column is authenticated: a national id cannot be shown as a name."""
    envelope = Envelope(keyring())
    row = uuid.uuid4()
    sealed = envelope.encrypt(b"AB123456C", row_place(row, "national_id"))
    with pytest.raises(UndecryptableData):
        envelope.decrypt(sealed, row_place(row, "full_name"))


@pytest.mark.parametrize("offset", [0, 3, 8, 20, -1])
def test_a_flipped_bit_anywhere_does_not_decrypt(offset: int) -> None:
    """Version, key id, nonce, ciphertext and tag are all covered by the tag."""
    envelope = Envelope(keyring(1, 2))
    where = row_place(uuid.uuid4())
    sealed = bytearray(envelope.encrypt(b"+442079460000", where))
    sealed[offset] ^= 0x01
    with pytest.raises(UndecryptableData):
        envelope.decrypt(bytes(sealed), where)


def test_after_rotation_new_writes_use_the_new_key_and_old_data_still_decrypts() -> None:
    """Key 2 encrypts from now on; what key 1 encrypted opens as before."""
    where = row_place(uuid.uuid4())
    old = Envelope(keyring(1)).encrypt(b"Alice Liddell", where)
    rotated = Envelope(keyring(1, 2))
    new = rotated.encrypt(b"Alice Liddell", where)
    assert (rotated.key_id_of(old), rotated.key_id_of(new)) == (1, 2)
    assert rotated.decrypt(old, where) == rotated.decrypt(new, where) == b"Alice Liddell"


def test_a_ciphertext_under_a_key_the_ring_lacks_does_not_decrypt() -> None:
    """Removing a key before re-wrapping would lose data; the error names the key."""
    where = row_place(uuid.uuid4())
    sealed = Envelope(keyring(1, 2)).encrypt(b"x", where)
    with pytest.raises(UndecryptableData, match="data key 2"):
        Envelope(keyring(1)).decrypt(sealed, where)


def test_the_vault_seals_and_opens_a_customer_bound_to_its_id() -> None:
    """All four fields round-trip; none is readable in its sealed form."""
    vault = AesGcmVault(keyring())
    customer = uuid.uuid4()
    sealed = vault.seal(customer, ALICE)
    assert vault.open(customer, sealed) == ALICE
    for ciphertext, plain in zip(
        sealed.all(),
        (ALICE.full_name, ALICE.email, ALICE.phone_number, ALICE.national_id),
        strict=True,
    ):
        assert plain.encode() not in ciphertext
    with pytest.raises(UndecryptableData):
        vault.open(uuid.uuid4(), sealed)


def test_the_email_index_is_a_keyed_hmac_of_the_normalised_address() -> None:
    """Same address (any case, spaces): same index; another key: another; never plain SHA-256."""
    vault = AesGcmVault(keyring())
    index = vault.email_index(canonical_email("  Alice@Example.COM "))
    assert index == vault.email_index("alice@example.com")
    assert len(index) == 32
    assert index != hashlib.sha256(b"alice@example.com").digest()
    other = AesGcmVault(StaticKeyring({1: bytes(range(32))}, bytes(range(1, 33))))
    assert other.email_index("alice@example.com") != index


def test_personal_data_never_shows_itself_in_a_repr() -> None:
    """A stray log line or traceback prints <redacted>, not the values."""
    assert "Alice" not in repr(ALICE) and "AB123456C" not in repr(ALICE)
    assert "Alice" not in f"{ALICE} {[ALICE]}"


def test_a_file_keyring_is_made_of_owner_only_random_keys(tmp_path: Path) -> None:
    """create_file_keyring: a 0700 directory, 0600 files of 32 random bytes, made once."""
    directory = tmp_path / "data-keys"
    assert create_file_keyring(directory)
    assert not create_file_keyring(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    assert files == ["blind-index.key", "data-1.key"]
    for name in files:
        path = directory / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_bytes()) == 32
    assert (directory / "data-1.key").read_bytes() != (directory / "blind-index.key").read_bytes()


def test_rotating_the_file_keyring_adds_the_next_key_and_keeps_the_old(tmp_path: Path) -> None:
    """`keys rotate-data`: key 2 encrypts, key 1 stays to decrypt."""
    directory = tmp_path / "data-keys"
    create_file_keyring(directory)
    first = load_file_keyring(directory, insecure_dev=False)
    assert add_data_key(directory) == 2
    ring = load_file_keyring(directory, insecure_dev=False)
    assert ring.current_data_key_id == 2
    assert ring.data_key(1) == first.data_key(1)
    assert ring.blind_index_key() == first.blind_index_key()
