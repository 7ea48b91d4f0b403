"""A signing key set on disk, as identity keeps it, and the JWKS it publishes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mesh.tokens import Jwks
from services.identity.adapters.access_tokens import JwtAccessTokens
from services.identity.adapters.signing_keys import KeyDirectory, LoadedKeySet, SigningKey

from .forge import AUDIENCE, ISSUER, NOW

NOW_DT = datetime.fromtimestamp(NOW, UTC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> LoadedKeySet:
    directory = KeyDirectory(tmp_path_factory.mktemp("identity") / "keys")
    directory.initialize(NOW_DT)
    return directory.load(insecure_dev=False)


@pytest.fixture(scope="module")
def signer(keys: LoadedKeySet) -> SigningKey:
    """The key that signs at NOW (with its kid), for forging validly signed tokens."""
    return keys.signer(NOW_DT)


@pytest.fixture(scope="module")
def jwks(keys: LoadedKeySet) -> Jwks:
    return Jwks.from_dicts(keys.public_jwks(NOW_DT))


@pytest.fixture(scope="module")
def tokens(keys: LoadedKeySet) -> JwtAccessTokens:
    return JwtAccessTokens(lambda: keys, issuer=ISSUER, audience=AUDIENCE)
