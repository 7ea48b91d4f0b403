"""`launch` (what `bankmesh up` runs) in a child process, for tests of the whole mesh.

The child runs a small driver script; the mesh counts as up once
endpoints.json says `complete`. On leaving, the child gets SIGTERM (the
orderly shutdown `bankmesh up` gives Ctrl-C) and is killed only if it
does not stop within `stop_timeout`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def endpoints_complete(endpoints: Path) -> bool:
    """endpoints.json appears after the first service; the mesh is up once it says complete."""
    try:
        return json.loads(endpoints.read_text()).get("complete") is True
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def embedded_engines_env() -> dict[str, str]:
    """This environment without the settings that would point the mesh at shared servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKMESH_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


@contextmanager
def launched(
    driver: str,
    data_dir: Path,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    stop_timeout: float = 60.0,
) -> Iterator[subprocess.Popen[str]]:
    """Run `driver` (python source; argv[1] is the data dir) until the mesh is up; yield it."""
    process = subprocess.Popen(
        [sys.executable, "-c", driver, str(data_dir), *args],
        env=dict(env) if env is not None else embedded_engines_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not endpoints_complete(data_dir / "endpoints.json"):
            if process.poll() is not None:
                pytest.fail(f"launch exited with {process.returncode}: {process.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the mesh did not come up within {timeout:.0f} s")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
