"""PID helpers shared by the embedded PostgreSQL and the supervisor lock."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (the pgserver user, say)
    return True


def read_pid(path: Path) -> int | None:
    """The PID on the first line of ``path``, or None if absent or garbled."""
    try:
        return int(path.read_text().splitlines()[0].strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None
