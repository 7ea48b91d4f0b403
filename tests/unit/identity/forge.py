"""Hand-made JWTs for attacking the verifier: any header, any claims, any signature."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://identity.bankmesh.test"
AUDIENCE = "https://api.bankmesh.test"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Mapping[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def es256(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    """A raw JWS ES256 signature (r || s, 32 bytes each)."""
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a genuine access token at NOW; `name=None` drops a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "cid": str(uuid.uuid4()),
        "roles": ["customer"],
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def header(kid: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def forge(
    head: Mapping[str, Any] | str,
    body: Mapping[str, Any],
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    signature: bytes | None = None,
) -> str:
    """A compact JWS; signed with `key` (ES256) unless `signature` is given."""
    first = head if isinstance(head, str) else segment(head)
    signing_input = f"{first}.{segment(body)}"
    if signature is None:
        assert key is not None, "give a key or a signature"
        signature = es256(key, signing_input.encode())
    return f"{signing_input}.{b64(signature)}"
