"""End-user assertions: only the TLS peer's own signature, for us, recently, counts."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mesh import assertions
from mesh.context import EndUser

ISSUER = "spiffe://bankmesh.local/svc/edge"
AUDIENCE = "spiffe://bankmesh.local/svc/account"
USER = EndUser("user-1", "cust-1", frozenset({"customer"}))


def keypair() -> tuple[bytes, bytes]:
    """A P-256 key and a self-signed certificate for it (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def edge() -> tuple[bytes, bytes]:
    return keypair()


def verify(token: str, cert: bytes, audience: str = AUDIENCE) -> EndUser:
    return assertions.verify(token, peer_certificate_pem=cert, issuer=ISSUER, audience=audience)


def test_an_assertion_signed_by_the_peer_names_the_user(edge: tuple[bytes, bytes]) -> None:
    """The callee learns user id, customer id and roles from a valid assertion."""
    key, cert = edge
    token = assertions.AssertionSigner(key, ISSUER).sign(USER, AUDIENCE)
    assert verify(token, cert) == USER


def test_an_assertion_signed_by_another_key_is_refused(edge: tuple[bytes, bytes]) -> None:
    """A service cannot replay an assertion another service signed: the key is the peer's."""
    key, _ = edge
    _, other_cert = keypair()
    token = assertions.AssertionSigner(key, ISSUER).sign(USER, AUDIENCE)
    with pytest.raises(assertions.InvalidAssertion):
        verify(token, other_cert)


def test_an_assertion_for_another_service_is_refused(edge: tuple[bytes, bytes]) -> None:
    """An assertion addressed to payment does not open the ledger."""
    key, cert = edge
    token = assertions.AssertionSigner(key, ISSUER).sign(USER, "spiffe://bankmesh.local/svc/pay")
    with pytest.raises(assertions.InvalidAssertion, match=r"(?i)audience"):
        verify(token, cert)


def test_an_expired_assertion_is_refused(edge: tuple[bytes, bytes]) -> None:
    """Assertions live a minute; an old one is worthless."""
    key, cert = edge
    past = int(time.time()) - 3600
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": past, "exp": past + 60},
        serialization.load_pem_private_key(key, None),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": assertions.TOKEN_TYPE},
    )
    with pytest.raises(assertions.InvalidAssertion, match="expired"):
        verify(token, cert)


def test_an_unsigned_assertion_is_refused(edge: tuple[bytes, bytes]) -> None:
    """alg=none, or a stripped signature, is never accepted."""
    _, cert = edge

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 60}
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': assertions.TOKEN_TYPE})}.{b64(claims)}."
        with pytest.raises(assertions.InvalidAssertion):
            verify(token, cert)


def test_an_access_token_is_not_an_assertion(edge: tuple[bytes, bytes]) -> None:
    """A token of another type (here a plain JWT) is refused even when correctly signed."""
    key, cert = edge
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 60},
        serialization.load_pem_private_key(key, None),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": "at+jwt"},
    )
    with pytest.raises(assertions.InvalidAssertion, match="not an end-user assertion"):
        verify(token, cert)


def test_signing_the_same_user_again_reuses_the_assertion(edge: tuple[bytes, bytes]) -> None:
    """Signatures are cached per user and audience, so a hot path signs once a minute."""
    key, _ = edge
    signer = assertions.AssertionSigner(key, ISSUER)
    assert signer.sign(USER, AUDIENCE) == signer.sign(USER, AUDIENCE)
