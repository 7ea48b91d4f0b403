"""The signing key set: rotation with an overlap, retirement, and what GetJwks publishes."""

from __future__ import annotations

import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from mesh.tokens import InvalidJwks, Jwks, Reason, TokenRejected, verify_access_token
from services.identity.adapters.access_tokens import JwtAccessTokens
from services.identity.adapters.keyring import UnsafeKeyMaterial
from services.identity.adapters.signing_keys import (
    MIN_OVERLAP_SECONDS,
    KeyDirectory,
    RotatingKeySet,
)
from services.identity.service_layer.ports import TokenSubject

from .conftest import NOW_DT
from .forge import AUDIENCE, ISSUER

OVERLAP = 1800


def directory(tmp_path: Path) -> KeyDirectory:
    keys = KeyDirectory(tmp_path / "keys")
    keys.initialize(NOW_DT)
    return keys


def issue(keys: KeyDirectory, at_seconds: float = 0) -> str:
    loaded = keys.load(insecure_dev=False)
    tokens = JwtAccessTokens(lambda: loaded, issuer=ISSUER, audience=AUDIENCE)
    subject = TokenSubject(uuid.uuid4(), None, frozenset({"admin"}), uuid.uuid4())
    return tokens.issue(subject, NOW_DT + timedelta(seconds=at_seconds)).token


def published(keys: KeyDirectory, at_seconds: float) -> Jwks:
    moment = NOW_DT + timedelta(seconds=at_seconds)
    return Jwks.from_dicts(keys.load(insecure_dev=False).public_jwks(moment))


def verify(token: str, jwks: Jwks, at_seconds: float) -> str:
    now = NOW_DT.timestamp() + at_seconds
    return verify_access_token(token, jwks, issuer=ISSUER, audience=AUDIENCE, now=now).key_id


def signing_kid(keys: KeyDirectory, at_seconds: float = 0) -> str:
    return keys.load(insecure_dev=False).signer(NOW_DT + timedelta(seconds=at_seconds)).kid


def test_both_kids_verify_during_the_overlap_and_the_old_one_fails_after(tmp_path: Path) -> None:
    """Rotation: tokens of the old key verify until its overlap ends, then are refused."""
    keys = directory(tmp_path)
    old_token = issue(keys)
    old_kid = signing_kid(keys)
    keys.rotate(NOW_DT + timedelta(seconds=100), OVERLAP, activate_after_seconds=0)
    new_token = issue(keys, 100)
    new_kid = signing_kid(keys, 100)
    assert new_kid != old_kid

    during = published(keys, 200)
    assert during.kids == {old_kid, new_kid}
    assert verify(old_token, during, 200) == old_kid
    assert verify(new_token, during, 200) == new_kid

    after = published(keys, 100 + OVERLAP)
    assert after.kids == {new_kid}
    with pytest.raises(TokenRejected) as caught:
        verify(old_token, after, 100 + 60)  # still inside its own lifetime: only the key is gone
    assert caught.value.reason is Reason.TOKEN_INVALID
    assert verify(issue(keys, 100 + OVERLAP), after, 100 + OVERLAP) == new_kid


def test_a_retired_kid_loses_its_private_key_and_stays_refused(tmp_path: Path) -> None:
    """`keys retire` deletes expired private keys; the current key and JWKS are unaffected."""
    keys = directory(tmp_path)
    old_kid = signing_kid(keys)
    old_token = issue(keys)
    keys.rotate(NOW_DT, OVERLAP, activate_after_seconds=0)
    assert keys.retire(NOW_DT + timedelta(seconds=OVERLAP - 1)) == []
    assert keys.retire(NOW_DT + timedelta(seconds=OVERLAP)) == [old_kid]
    assert not (keys.directory / f"{old_kid}.pem").exists()
    states = {info.kid: state for info, state in keys.states(NOW_DT)}
    assert states[old_kid] == "retired"
    jwks = published(keys, OVERLAP + 1)
    assert old_kid not in jwks.kids
    with pytest.raises(TokenRejected):
        verify(old_token, jwks, 10)


def test_a_new_key_is_published_before_it_signs(tmp_path: Path) -> None:
    """After `keys rotate` the JWKS has the next key while the old one still signs."""
    keys = directory(tmp_path)
    old_kid = signing_kid(keys)
    new_kid = keys.rotate(NOW_DT, OVERLAP, activate_after_seconds=600)
    assert published(keys, 1).kids == {old_kid, new_kid}
    assert signing_kid(keys, 599) == old_kid
    assert signing_kid(keys, 600) == new_kid
    states = {info.kid: state for info, state in keys.states(NOW_DT + timedelta(seconds=1))}
    assert states == {old_kid: "current", new_kid: "next"}
    later = {info.kid: state for info, state in keys.states(NOW_DT + timedelta(seconds=601))}
    assert later == {old_kid: "previous", new_kid: "current"}
    # The old key's tokens stay verifiable for the overlap counted from the switch.
    assert old_kid in published(keys, 600 + OVERLAP - 1).kids
    assert old_kid not in published(keys, 600 + OVERLAP).kids


def test_the_overlap_must_outlast_an_access_token(tmp_path: Path) -> None:
    """An overlap shorter than 900 s of lifetime plus 60 s of skew is refused."""
    keys = directory(tmp_path)
    with pytest.raises(ValueError, match="overlap"):
        keys.rotate(NOW_DT, MIN_OVERLAP_SECONDS - 1)
    keys.rotate(NOW_DT, MIN_OVERLAP_SECONDS)


def test_private_keys_are_owner_only_in_an_owner_only_directory(tmp_path: Path) -> None:
    """Key files are 0600 and the directory 0700."""
    keys = directory(tmp_path)
    keys.rotate(NOW_DT, OVERLAP, activate_after_seconds=0)
    assert stat.S_IMODE(keys.directory.stat().st_mode) == 0o700
    pems = list(keys.directory.glob("*.pem"))
    assert len(pems) == 2
    assert all(stat.S_IMODE(pem.stat().st_mode) == 0o600 for pem in pems)


def test_a_world_readable_private_key_is_refused_outside_development(tmp_path: Path) -> None:
    """A key file others can read stops the service, unless BANKMESH_INSECURE_DEV=1."""
    keys = directory(tmp_path)
    (pem,) = keys.directory.glob("*.pem")
    pem.chmod(0o644)
    with pytest.raises(UnsafeKeyMaterial, match="lets others read"):
        keys.load(insecure_dev=False)
    assert keys.load(insecure_dev=True).signer(NOW_DT).kid


def test_a_directory_others_can_read_is_refused_outside_development(tmp_path: Path) -> None:
    """The key directory itself must be private."""
    keys = directory(tmp_path)
    keys.directory.chmod(0o755)
    with pytest.raises(UnsafeKeyMaterial, match="chmod 700"):
        keys.load(insecure_dev=False)


def test_a_running_service_picks_up_a_rotation_without_restarting(tmp_path: Path) -> None:
    """RotatingKeySet re-reads keyset.json when it changes."""
    keys = directory(tmp_path)
    clock = [0.0]
    rotating = RotatingKeySet(
        keys, insecure_dev=False, check_interval=1.0, monotonic=lambda: clock[0]
    )
    first = rotating().signer(NOW_DT).kid
    new_kid = keys.rotate(NOW_DT, OVERLAP, activate_after_seconds=0)
    assert rotating().signer(NOW_DT).kid == first  # not before the next check
    clock[0] = 2.0
    assert rotating().signer(NOW_DT).kid == new_kid
    assert set(rotating().keys) == {first, new_kid}


def test_the_published_keys_are_public_p256_keys_only(tmp_path: Path) -> None:
    """GetJwks material: kty EC, crv P-256, alg ES256, use sig, and no private part."""
    keys = directory(tmp_path)
    (jwk,) = keys.load(insecure_dev=False).public_jwks(NOW_DT)
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d": "AAAA"}, "private"),
        ({"crv": "P-384"}, "P-256"),
        ({"kty": "oct"}, "P-256"),
        ({"alg": "HS256"}, "alg"),
        ({"kid": "../x"}, "kid"),
        ({"x": "AAAA"}, "public key"),
    ],
)
def test_a_jwks_with_a_bad_key_is_refused_as_a_whole(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    """The edge keeps its previous key set rather than trust a malformed one."""
    keys = directory(tmp_path)
    (jwk,) = keys.load(insecure_dev=False).public_jwks(NOW_DT)
    with pytest.raises(InvalidJwks, match=message):
        Jwks.from_dicts([{**jwk, **change}])


def test_a_jwks_naming_a_kid_twice_is_refused(tmp_path: Path) -> None:
    """Two keys under one kid would make the choice of key ambiguous."""
    keys = directory(tmp_path)
    (jwk,) = keys.load(insecure_dev=False).public_jwks(NOW_DT)
    with pytest.raises(InvalidJwks, match="twice"):
        Jwks.from_json({"keys": [jwk, jwk]})


def test_a_jwks_round_trips_through_json(tmp_path: Path) -> None:
    """What the edge caches (to_json) parses back to the same keys."""
    keys = directory(tmp_path)
    keys.rotate(NOW_DT, OVERLAP, activate_after_seconds=0)
    jwks = published(keys, 1)
    assert Jwks.from_json(jwks.to_json()).kids == jwks.kids
