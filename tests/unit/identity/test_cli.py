"""The key commands an operator runs: rotate, list, retire, rotate-data."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from services.identity.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_the_first_rotate_creates_a_key_and_the_next_publishes_one_ahead(tmp_path: Path) -> None:
    """`keys rotate` on an empty directory makes the first key; again, a next key in 600 s."""
    keys = str(tmp_path / "keys")
    first = runner.invoke(app, ["keys", "rotate", "--key-dir", keys])
    assert (first.exit_code, first.stdout) == (
        0,
        f"created the first signing key in {keys}; it signs from now on\n",
    )
    # Without the identity database the key operation cannot be audited, and it says so.
    assert "not in the audit log" in first.stderr
    code, output = run("keys", "rotate", "--key-dir", keys)
    assert code == 0 and "signs in 600 s" in output
    code, listing = run("keys", "list", "--key-dir", keys, "--data-keys", str(tmp_path / "none"))
    assert code == 0
    assert "current" in listing and "next" in listing


def test_an_overlap_shorter_than_a_token_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """--overlap-seconds 10: exit 1 with the reason; the key set stays as it was."""
    keys = tmp_path / "keys"
    run("keys", "rotate", "--key-dir", str(keys))
    before = (keys / "keyset.json").read_text()
    code, output = run("keys", "rotate", "--key-dir", str(keys), "--overlap-seconds", "10")
    assert code == 1 and "at least 960 seconds" in output
    assert (keys / "keyset.json").read_text() == before


def test_retire_has_nothing_to_do_inside_the_overlap(tmp_path: Path) -> None:
    """Right after a rotation no key is past its overlap."""
    keys = str(tmp_path / "keys")
    run("keys", "rotate", "--key-dir", keys)
    run("keys", "rotate", "--key-dir", keys, "--activate-after-seconds", "0")
    assert run("keys", "retire", "--key-dir", keys) == (0, "no key is due for retirement\n")


def test_rotate_data_creates_the_keyring_then_adds_keys_owner_only(tmp_path: Path) -> None:
    """`keys rotate-data`: key 1 and the index key first, then key 2; every file 0600."""
    data = tmp_path / "data-keys"
    code, output = run("keys", "rotate-data", "--data-keys", str(data))
    assert code == 0 and "created data key 1" in output
    code, output = run("keys", "rotate-data", "--data-keys", str(data))
    assert code == 0 and "data key 2 now encrypts" in output
    keys = sorted(p for p in data.iterdir() if p.suffix == ".key")
    assert [p.name for p in keys] == ["blind-index.key", "data-1.key", "data-2.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys)
