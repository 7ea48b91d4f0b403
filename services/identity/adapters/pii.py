"""Personal data at rest: AES-256-GCM envelopes bound to their row, and a blind index.

Every encrypted value is one self-describing envelope:

    offset  size  field
    0       1     version (1)
    1       4     data key id, unsigned big-endian
    5       12    nonce: 96 random bits, fresh for every encryption
    17      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then its tag

The associated data is the 5-byte header and the value's place:
``identity.<table>.<column>/<row id>``. GCM authenticates it, so a
ciphertext copied into another row or column (or given another key id) fails
to decrypt instead of showing one customer's data as another's.

Random 96-bit nonces are safe for up to 2^32 encryptions per key (NIST SP
800-38D); rotating data keys (`keys rotate-data`) keeps every key far below.

Emails are looked up through a blind index: HMAC-SHA256 under a separate
key of the normalised email. Unlike a plain hash, nobody without that key
can test a guessed address against the database.
"""

from __future__ import annotations

import os
import struct
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.identity.domain.model import PersonalData
from services.identity.service_layer.ports import SealedPersonalData

from .keyring import Keyring

ENVELOPE_VERSION = 1
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size  # 5
NONCE_BYTES = 12
TAG_BYTES = 16
# Where the key id sits, for SQL that counts ciphertexts per key (1-based, as in SQL).
KEY_ID_SQL_OFFSET = 2
KEY_ID_BYTES = 4

CUSTOMERS_TABLE = "customers"
_INDEX_DOMAIN = b"bankmesh.identity.email-index.v1\x00"


class UndecryptableData(Exception):
    """A ciphertext that does not open: tampered with, moved, or under a key we lack."""


class Envelope:
    """Encrypts and decrypts envelopes with the keyring's keys."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._ciphers: dict[int, AESGCM] = {}

    @property
    def current_key_id(self) -> int:
        return self._keyring.current_data_key_id

    def encrypt(self, plaintext: bytes, place: str) -> bytes:
        key_id = self._keyring.current_data_key_id
        header = _HEADER.pack(ENVELOPE_VERSION, key_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(key_id).encrypt(nonce, plaintext, header + place.encode())
        return header + nonce + sealed

    def decrypt(self, envelope: bytes, place: str) -> bytes:
        if len(envelope) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
            raise UndecryptableData(f"{place}: too short to be an envelope")
        header = envelope[:HEADER_BYTES]
        version, key_id = _HEADER.unpack(header)
        if version != ENVELOPE_VERSION:
            raise UndecryptableData(f"{place}: envelope version {version} is unknown")
        nonce = envelope[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            cipher = self._cipher(key_id)
        except KeyError as exc:
            raise UndecryptableData(f"{place}: data key {key_id} is not in the keyring") from exc
        try:
            return cipher.decrypt(
                nonce, envelope[HEADER_BYTES + NONCE_BYTES :], header + place.encode()
            )
        except InvalidTag as exc:
            raise UndecryptableData(
                f"{place}: does not authenticate (altered, or copied from elsewhere)"
            ) from exc

    @staticmethod
    def key_id_of(envelope: bytes) -> int:
        _, key_id = _HEADER.unpack(envelope[:HEADER_BYTES])
        return int(key_id)

    def _cipher(self, key_id: int) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self._keyring.data_key(key_id))
        return cipher


def place(table: str, column: str, row_id: uuid.UUID) -> str:
    return f"identity.{table}.{column}/{row_id}"


class AesGcmVault:
    """The PersonalDataVault: customers' personal data in envelopes, emails as a blind index."""

    def __init__(self, keyring: Keyring) -> None:
        self._envelope = Envelope(keyring)
        self._index_key = keyring.blind_index_key()

    @property
    def current_key_id(self) -> int:
        return self._envelope.current_key_id

    def seal(self, customer_id: uuid.UUID, data: PersonalData) -> SealedPersonalData:
        def enc(column: str, value: str) -> bytes:
            return self._envelope.encrypt(
                value.encode(), place(CUSTOMERS_TABLE, column, customer_id)
            )

        return SealedPersonalData(
            full_name=enc("full_name", data.full_name),
            email=enc("email", data.email),
            phone_number=enc("phone_number", data.phone_number),
            national_id=enc("national_id", data.national_id),
        )

    def open(self, customer_id: uuid.UUID, sealed: SealedPersonalData) -> PersonalData:
        def dec(column: str, value: bytes) -> str:
            return self._envelope.decrypt(
                value, place(CUSTOMERS_TABLE, column, customer_id)
            ).decode()

        return PersonalData(
            full_name=dec("full_name", sealed.full_name),
            email=dec("email", sealed.email),
            phone_number=dec("phone_number", sealed.phone_number),
            national_id=dec("national_id", sealed.national_id),
        )

    def key_id_of(self, ciphertext: bytes) -> int:
        return self._envelope.key_id_of(ciphertext)

    def email_index(self, normalized_email: str) -> bytes:
        mac = hmac.HMAC(self._index_key, hashes.SHA256())
        mac.update(_INDEX_DOMAIN + normalized_email.encode())
        return mac.finalize()
