"""Passwords: argon2id hashes, rehash on changed parameters, and an unknown user's cost."""

from __future__ import annotations

import time

import argon2
import pytest

from services.identity.adapters.passwords import Argon2Passwords, Argon2Settings
from services.identity.domain.errors import InvalidRequest, WeakPassword
from services.identity.domain.model import check_password

# Cheap enough for a unit test, still argon2id.
FAST = Argon2Settings(time_cost=2, memory_kib=19 * 1024, parallelism=1)


@pytest.fixture(scope="module")
def passwords() -> Argon2Passwords:
    return Argon2Passwords(FAST.parameters())


async def test_a_password_is_stored_as_an_argon2id_hash_that_verifies(
    passwords: Argon2Passwords,
) -> None:
    """The hash names argon2id and its parameters; only the right password verifies."""
    stored = await passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct horse" not in stored
    assert await passwords.verify(stored, "correct horse battery staple")
    assert not await passwords.verify(stored, "correct horse battery stapler")
    assert not await passwords.verify("not a hash", "anything at all")


async def test_the_same_password_hashes_differently_each_time(passwords: Argon2Passwords) -> None:
    """Every hash has its own salt, so equal passwords do not show as equal hashes."""
    assert await passwords.hash("same password!!") != await passwords.hash("same password!!")


async def test_a_hash_made_with_old_parameters_needs_a_rehash(passwords: Argon2Passwords) -> None:
    """After the parameters change, older hashes still verify and are flagged for rehashing."""
    stronger = Argon2Passwords(Argon2Settings(time_cost=3, memory_kib=19 * 1024).parameters())
    old = await passwords.hash("a long enough password")
    assert await stronger.verify(old, "a long enough password")
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(await stronger.hash("a long enough password"))


def test_the_default_parameters_are_rfc_9106_low_memory() -> None:
    """argon2id, t=3, 64 MiB, p=4 unless configured otherwise."""
    assert Argon2Settings().parameters() == argon2.profiles.RFC_9106_LOW_MEMORY


@pytest.mark.parametrize(
    ("time_cost", "memory_kib"), [(1, 64 * 1024), (3, 8 * 1024), (2, 19 * 1024 - 1)]
)
def test_parameters_below_the_owasp_floor_are_refused(time_cost: int, memory_kib: int) -> None:
    """Configuration cannot weaken argon2id below 19 MiB and two passes."""
    with pytest.raises(ValueError, match="19 MiB"):
        Argon2Settings(time_cost=time_cost, memory_kib=memory_kib)


def test_only_argon2id_is_accepted() -> None:
    """argon2i and argon2d parameters are refused."""
    with pytest.raises(ValueError, match="argon2id"):
        Argon2Passwords(argon2.Parameters(argon2.Type.I, 19, 16, 32, 2, 19 * 1024, 1))


async def test_an_unknown_user_costs_what_a_wrong_password_costs(
    passwords: Argon2Passwords,
) -> None:
    """verify_dummy costs what verifying a real hash costs (within a factor of 2)."""
    stored = await passwords.hash("the real password")
    real: list[float] = []
    dummy: list[float] = []
    for _ in range(15):
        started = time.perf_counter()
        await passwords.verify(stored, "a wrong password")
        real.append(time.perf_counter() - started)
        started = time.perf_counter()
        await passwords.verify_dummy("a wrong password")
        dummy.append(time.perf_counter() - started)
    # The fastest of interleaved runs is the cost itself; slower ones measure how busy
    # the machine is. A factor of 2 allows for that; no hashing at all would be ~1000x.
    ratio = min(dummy) / min(real)
    assert 1 / 2 < ratio < 2


@pytest.mark.parametrize("password", ["", "short", "elevenchars", "ünïcödé123"])
def test_a_password_under_twelve_characters_is_weak(password: str) -> None:
    """WEAK_PASSWORD below 12 characters (characters, not bytes)."""
    with pytest.raises(WeakPassword):
        check_password(password)


@pytest.mark.parametrize("password", ["twelve chars", "ünïcödé12345", "x" * 1024])
def test_a_password_of_twelve_characters_or_more_is_accepted(password: str) -> None:
    """12 to 1024 characters pass the length rule."""
    check_password(password)


def test_a_password_beyond_1024_characters_is_refused() -> None:
    """An upper bound keeps hashing from becoming a denial of service."""
    with pytest.raises(InvalidRequest):
        check_password("x" * 1025)
