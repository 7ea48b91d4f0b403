"""The access-token verifier (mesh.tokens) against the attacks of RFC 8725 and their kin.

Each test forges or alters a token the way an attacker would and asserts the
refusal, with its reason. A genuine token from identity's own signer is the
control: it verifies, so every refusal below is the attack's doing.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from mesh import assertions
from mesh.context import EndUser
from mesh.tokens import (
    AccessClaims,
    Jwks,
    Reason,
    TokenRejected,
    public_jwk,
    verify_access_token,
)
from services.identity.adapters.access_tokens import JwtAccessTokens
from services.identity.adapters.signing_keys import SigningKey
from services.identity.domain.sessions import new_refresh_token
from services.identity.service_layer.ports import TokenSubject

from .conftest import NOW_DT
from .forge import AUDIENCE, ISSUER, NOW, b64, claims, es256, forge, header, segment

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def verify(token: str, jwks: Jwks, *, now: float = NOW, **kwargs: Any) -> AccessClaims:
    return verify_access_token(token, jwks, issuer=ISSUER, audience=AUDIENCE, now=now, **kwargs)


def refused(token: str, jwks: Jwks, *, now: float = NOW) -> Reason:
    with pytest.raises(TokenRejected) as caught:
        verify(token, jwks, now=now)
    return caught.value.reason


def genuine(tokens: JwtAccessTokens, roles: frozenset[str] = frozenset({"customer"})) -> str:
    subject = TokenSubject(uuid.uuid4(), uuid.uuid4(), roles, uuid.uuid4())
    return tokens.issue(subject, NOW_DT).token


def signed(signer: SigningKey, **claim_overrides: Any) -> str:
    """A token with our real key and kid, whatever its claims say."""
    return forge(header(signer.kid), claims(**claim_overrides), signer.key)


def parts(token: str) -> list[str]:
    return token.split(".")


# -- the control ----------------------------------------------------------------------------


def test_a_token_from_the_identity_signer_verifies_and_names_its_session(
    tokens: JwtAccessTokens, jwks: Jwks, signer: SigningKey
) -> None:
    """A genuine token yields its subject, customer, roles, session and kid."""
    subject = TokenSubject(uuid.uuid4(), uuid.uuid4(), frozenset({"customer"}), uuid.uuid4())
    token = tokens.issue(subject, NOW_DT).token
    result = verify(token, jwks, now=NOW + 10)
    assert result.subject == str(subject.user_id)
    assert result.customer_id == str(subject.customer_id)
    assert result.session_id == str(subject.session_id)
    assert result.roles == frozenset({"customer"})
    assert result.key_id == signer.kid
    assert result.expires_at - result.issued_at == 900
    assert result.end_user() == EndUser(
        str(subject.user_id), str(subject.customer_id), result.roles
    )


def test_the_signer_writes_the_rfc_9068_header(tokens: JwtAccessTokens, signer: SigningKey) -> None:
    """Header: alg ES256, typ at+jwt, the current kid; nothing else."""
    assert jwt.get_unverified_header(genuine(tokens)) == {
        "alg": "ES256",
        "typ": "at+jwt",
        "kid": signer.kid,
    }


# -- alg: none, and stripped or junk signatures ---------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "none ", ""])
@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none_in_any_casing_is_refused(
    signer: SigningKey, jwks: Jwks, alg: str, signature: str
) -> None:
    """An unsigned token (alg none, with or without a signature part) is TOKEN_INVALID."""
    unsigned = f"{segment(header(signer.kid, alg=alg))}.{segment(claims())}.{signature}"
    assert refused(unsigned, jwks) is Reason.TOKEN_INVALID


def test_a_token_without_alg_is_refused(signer: SigningKey, jwks: Jwks) -> None:
    """No alg at all is no algorithm we accept."""
    token = forge(header(signer.kid, alg=None), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def test_an_empty_signature_is_refused(tokens: JwtAccessTokens, jwks: Jwks) -> None:
    """header.payload. (signature part present but empty) is refused."""
    head, body, _ = parts(genuine(tokens))
    assert refused(f"{head}.{body}.", jwks) is Reason.TOKEN_INVALID


def test_a_stripped_signature_is_refused(tokens: JwtAccessTokens, jwks: Jwks) -> None:
    """header.payload (the signature part removed) is refused."""
    head, body, _ = parts(genuine(tokens))
    assert refused(f"{head}.{body}", jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize(
    "signature",
    [
        b64(os.urandom(64)),
        b64(os.urandom(32)),
        b64(os.urandom(72)),
        "not*base64!",
        "QUFB" + "=" * 2,
    ],
)
def test_a_garbage_signature_is_refused(
    tokens: JwtAccessTokens, jwks: Jwks, signature: str
) -> None:
    """Random bytes of any length, or text that is not base64url, never verify."""
    head, body, _ = parts(genuine(tokens))
    assert refused(f"{head}.{body}.{signature}", jwks) is Reason.TOKEN_INVALID


def test_changing_a_claim_breaks_the_signature(tokens: JwtAccessTokens, jwks: Jwks) -> None:
    """Granting oneself the admin role in a genuine token's claims is refused."""
    head, body, signature = parts(genuine(tokens))
    raw = json.loads(jwt.utils.base64url_decode(body))
    raw["roles"] = ["admin"]
    assert refused(f"{head}.{segment(raw)}.{signature}", jwks) is Reason.TOKEN_INVALID


def test_a_token_signed_by_another_key_under_our_kid_is_refused(
    signer: SigningKey, jwks: Jwks
) -> None:
    """The kid picks our key; a signature by any other key does not verify against it."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = forge(header(signer.kid), claims(), attacker)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


# -- CVE-2022-21449 and out-of-range signatures ------------------------------------------------


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 0),
        (0, 1),
        (1, 0),
        (P256_ORDER, P256_ORDER),
        (P256_ORDER, 1),
        (2**256 - 1, 2**256 - 1),
    ],
    ids=["all-zero", "r-zero", "s-zero", "r-s-equal-n", "r-equal-n", "all-ones"],
)
def test_the_psychic_signature_and_out_of_range_values_are_refused(
    tokens: JwtAccessTokens, jwks: Jwks, r: int, s: int
) -> None:
    """r or s outside 1..n-1 (the all-zero signature of CVE-2022-21449 first) is refused."""
    head, body, _ = parts(genuine(tokens))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert refused(f"{head}.{body}.{b64(signature)}", jwks) is Reason.TOKEN_INVALID


# -- algorithm confusion ---------------------------------------------------------------------------


def _public_secrets(signer: SigningKey) -> dict[str, bytes]:
    public = signer.key.public_key()
    return {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk": json.dumps(public_jwk(signer.kid, public)).encode(),
        "point": public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
    }


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("form", ["pem", "der", "jwk", "point"])
def test_hmac_signed_with_the_public_key_as_secret_is_refused(
    signer: SigningKey, jwks: Jwks, alg: str, form: str
) -> None:
    """The classic confusion: HS* keyed with our public key (any encoding) is refused."""
    secret = _public_secrets(signer)[form]
    signing_input = f"{segment(header(signer.kid, alg=alg))}.{segment(claims())}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    assert refused(f"{signing_input}.{b64(mac)}", jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "PS256", "EdDSA", "ES256K", "es256"])
def test_any_algorithm_but_es256_is_refused(signer: SigningKey, jwks: Jwks, alg: str) -> None:
    """Even with a valid ES256 signature, a header naming another alg is refused."""
    token = forge(header(signer.kid, alg=alg), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_tokens_signed_with_other_key_types_are_refused(
    signer: SigningKey, jwks: Jwks, kind: str
) -> None:
    """RS256 and EdDSA tokens from the attacker's own keys, under our kid, are refused."""
    key: Any
    if kind == "rsa":
        key, alg = rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"
    else:
        key, alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"
    token = jwt.encode(claims(), key, algorithm=alg, headers={"typ": "at+jwt", "kid": signer.kid})
    assert refused(token, jwks) is Reason.TOKEN_INVALID


# -- required claims and time -------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "jti", "sid"])
def test_a_token_missing_a_required_claim_is_refused(
    signer: SigningKey, jwks: Jwks, claim: str
) -> None:
    """Without exp, iat, iss, aud, sub (or our jti and sid) a token is refused."""
    assert refused(signed(signer, **{claim: None}), jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["1767225600", True, None, 1e400], ids=str)
def test_times_that_are_not_numbers_are_refused(
    signer: SigningKey, jwks: Jwks, claim: str, value: Any
) -> None:
    """exp, iat and nbf as strings, booleans, null or infinity are refused."""
    body = claims()
    body[claim] = value
    token = forge(header(signer.kid), body, signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def test_an_expired_token_is_refused_as_expired(tokens: JwtAccessTokens, jwks: Jwks) -> None:
    """Past exp plus 60 s of skew: TOKEN_EXPIRED."""
    assert refused(genuine(tokens), jwks, now=NOW + 900 + 60) is Reason.TOKEN_EXPIRED


def test_a_token_just_past_exp_is_within_the_skew(tokens: JwtAccessTokens, jwks: Jwks) -> None:
    """A clock 59 s behind the issuer's still accepts a token at its exp."""
    assert verify(genuine(tokens), jwks, now=NOW + 900 + 59).subject


def test_a_forged_expired_token_is_invalid_not_expired(signer: SigningKey, jwks: Jwks) -> None:
    """The signature is checked before the times: a forgery learns nothing from its exp."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = forge(header(signer.kid), claims(exp=NOW - 3600, iat=NOW - 4000), attacker)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_from_the_future_is_refused(signer: SigningKey, jwks: Jwks, claim: str) -> None:
    """nbf or iat more than 60 s ahead of our clock is refused."""
    later = NOW + 61
    body: dict[str, Any] = {claim: later}
    if claim == "iat":
        body.update(nbf=later, exp=later + 900)
    assert refused(signed(signer, **body), jwks) is Reason.TOKEN_INVALID


def test_a_token_issued_slightly_ahead_is_within_the_skew(signer: SigningKey, jwks: Jwks) -> None:
    """An issuer clock 30 s ahead of ours is tolerated."""
    token = signed(signer, iat=NOW + 30, nbf=NOW + 30, exp=NOW + 930)
    assert verify(token, jwks).subject


def test_a_token_living_longer_than_fifteen_minutes_is_refused(
    signer: SigningKey, jwks: Jwks
) -> None:
    """exp - iat above 900 s is not a token identity issues, even with our signature."""
    assert refused(signed(signer, exp=NOW + 901), jwks) is Reason.TOKEN_INVALID


def test_the_skew_allowed_by_a_caller_is_capped_at_sixty_seconds(
    tokens: JwtAccessTokens, jwks: Jwks
) -> None:
    """A caller cannot ask for a laxer clock than the checklist allows."""
    with pytest.raises(ValueError, match="leeway"):
        verify(genuine(tokens), jwks, leeway=3600)


# -- audience, issuer and type -----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://evil.example"},
        {"aud": ["https://evil.example", "https://other.example"]},
        {"aud": ""},
        {"aud": 42},
        {"iss": "https://evil.example"},
        {"iss": ISSUER + "/"},
    ],
    ids=["aud", "aud-list", "aud-empty", "aud-number", "iss", "iss-trailing-slash"],
)
def test_a_wrong_audience_or_issuer_is_refused(
    signer: SigningKey, jwks: Jwks, overrides: dict[str, Any]
) -> None:
    """Tokens for another audience, or from another issuer, are refused."""
    assert refused(signed(signer, **overrides), jwks) is Reason.TOKEN_INVALID


def test_an_audience_list_that_names_us_is_accepted(signer: SigningKey, jwks: Jwks) -> None:
    """aud may be a list (RFC 7519); ours must be in it."""
    assert verify(signed(signer, aud=["https://other.example", AUDIENCE]), jwks).subject


@pytest.mark.parametrize(
    "typ", [None, "JWT", "jwt", "rt+jwt", "bankmesh-end-user+jwt", "at+jwt+x", "", 1]
)
def test_a_type_other_than_at_jwt_is_refused(signer: SigningKey, jwks: Jwks, typ: Any) -> None:
    """Only at+jwt (RFC 9068) is an access token; ID tokens, assertions and others are not."""
    token = forge(header(signer.kid, typ=typ), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def test_the_full_media_type_of_an_access_token_is_accepted(signer: SigningKey, jwks: Jwks) -> None:
    """RFC 9068 allows typ application/at+jwt too."""
    token = forge(header(signer.kid, typ="application/at+jwt"), claims(), signer.key)
    assert verify(token, jwks).subject


def test_a_refresh_token_used_as_an_access_token_is_refused(jwks: Jwks) -> None:
    """An opaque refresh token is not a JWT at all."""
    refresh_token, _ = new_refresh_token()
    assert refused(refresh_token, jwks) is Reason.TOKEN_INVALID


def test_an_end_user_assertion_signed_with_our_key_is_not_an_access_token(
    signer: SigningKey, jwks: Jwks
) -> None:
    """A mesh end-user assertion (typ bankmesh-end-user+jwt) is refused even under our kid."""
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assertion = assertions.AssertionSigner(pem, ISSUER).sign(
        EndUser("u-1", "c-1", frozenset({"admin"})), AUDIENCE
    )
    head, body, _ = parts(assertion)
    rewritten = {**json.loads(jwt.utils.base64url_decode(head)), "kid": signer.kid}
    token = forge(rewritten, json.loads(jwt.utils.base64url_decode(body)), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID
    assert refused(assertion, jwks) is Reason.TOKEN_INVALID


# -- kid and key-fetching headers -----------------------------------------------------------------


@pytest.fixture
def no_files_or_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to open a file or a socket during verification is recorded and fails."""
    attempts: list[str] = []

    def forbid(what: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise AssertionError(f"the verifier tried to {what}")

        return refuse

    monkeypatch.setattr(builtins, "open", forbid("open a file"))
    monkeypatch.setattr(os, "open", forbid("open a file"))
    monkeypatch.setattr(socket, "socket", forbid("open a socket"))
    monkeypatch.setattr(socket, "create_connection", forbid("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", forbid("resolve a name"))
    return attempts


@pytest.mark.parametrize(
    "kid",
    [
        "unknown-kid",
        "../../../../etc/passwd",
        "../keys/current",
        "/dev/null",
        "x' OR '1'='1",
        "1; DROP TABLE identity.users; --",
        "kid%00",
        "",
        " " + "a",
        "a" * 65,
        "https://evil.example/key",
    ],
)
def test_a_kid_outside_the_local_set_is_refused_without_touching_files_or_network(
    signer: SigningKey, jwks: Jwks, no_files_or_network: list[str], kid: str
) -> None:
    """Unknown, path-like or SQL-like kids select nothing; no file, DB or socket is touched."""
    token = forge(header(kid), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID
    assert no_files_or_network == []


@pytest.mark.parametrize("kid", [None, 7, ["a"], {"k": 1}])
def test_a_missing_or_non_string_kid_is_refused(signer: SigningKey, jwks: Jwks, kid: Any) -> None:
    """A kid must be a string naming a key."""
    head: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt"}
    if kid is not None:
        head["kid"] = kid
    token = forge(head, claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def _attacker_certificate(key: ec.EllipticCurvePrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity.bankmesh.local")])
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
    return b64(cert.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("kid_known", [False, True], ids=["unknown-kid", "our-kid"])
@pytest.mark.parametrize("carrier", ["jwk", "jku", "x5u", "x5c"])
def test_a_token_carrying_its_own_key_is_refused_and_nothing_is_fetched(
    signer: SigningKey,
    jwks: Jwks,
    no_files_or_network: list[str],
    carrier: str,
    kid_known: bool,
) -> None:
    """jwk, jku, x5u and x5c naming the attacker's key are never used or followed."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    kid = signer.kid if kid_known else "attacker-key"
    embedded: dict[str, Any] = {
        "jwk": public_jwk(kid, attacker.public_key()),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": [_attacker_certificate(attacker)],
    }
    token = forge(header(kid, **{carrier: embedded[carrier]}), claims(), attacker)
    assert refused(token, jwks) is Reason.TOKEN_INVALID
    assert no_files_or_network == []


# -- malformed JOSE -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"b64": False, "crit": ["b64"]}])
def test_critical_or_unencoded_payload_headers_are_refused(
    signer: SigningKey, jwks: Jwks, extra: dict[str, Any]
) -> None:
    """crit and b64 (RFC 7797) change how a token is read; we understand neither."""
    token = forge(header(signer.kid, **extra), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def test_a_header_naming_alg_twice_is_refused(signer: SigningKey, jwks: Jwks) -> None:
    """Duplicate members let two parsers see two different headers; refuse them."""
    raw = f'{{"alg":"none","typ":"at+jwt","kid":"{signer.kid}","alg":"ES256"}}'
    token = forge(b64(raw.encode()), claims(), signer.key)
    assert refused(token, jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d", "..", "a..c", "e30.e30.e30", "%%%.%%%.%%%", "x" * 10_000],
)
def test_things_that_are_not_compact_jws_are_refused(jwks: Jwks, token: str) -> None:
    """Empty, short, long, extra parts, JSON that is not a header: all TOKEN_INVALID."""
    assert refused(token, jwks) is Reason.TOKEN_INVALID


def test_claims_that_are_not_an_object_are_refused(signer: SigningKey, jwks: Jwks) -> None:
    """A signed JSON array is not a claims set."""
    signing_input = f"{segment(header(signer.kid))}.{b64(b'[1, 2]')}"
    token = f"{signing_input}.{b64(es256(signer.key, signing_input.encode()))}"
    assert refused(token, jwks) is Reason.TOKEN_INVALID


@pytest.mark.parametrize(
    "overrides",
    [{"roles": "admin"}, {"roles": [1]}, {"cid": 5}, {"sub": ""}, {"sid": 3}],
    ids=["roles-string", "roles-numbers", "cid-number", "sub-empty", "sid-number"],
)
def test_claims_of_the_wrong_shape_are_refused(
    signer: SigningKey, jwks: Jwks, overrides: dict[str, Any]
) -> None:
    """roles a list of names, cid/sub/sid strings: anything else is refused."""
    assert refused(signed(signer, **overrides), jwks) is Reason.TOKEN_INVALID
