"""Errors the operator can act on.

Everything in mesh.runtime that fails for a reason outside the code (a port in
use, an unreachable database, a service that crashed at start) raises a
MeshError carrying a `hint`: the next thing to try. The CLI prints message and
hint and exits non-zero; a traceback is reserved for bugs.
"""

from __future__ import annotations


class MeshError(Exception):
    """A failure with a message for the operator and a hint of what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class DatabaseUnreachable(MeshError):
    """PostgreSQL could not be reached or refused us."""

    def __init__(self, message: str, *, server: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        # Kept apart from the message so a caller that knows where the URL came
        # from (DATABASE_URL, a test variable) can word its own hint.
        self.server = server


class ServiceFailed(MeshError):
    """A service process died, never became ready, or its migrations failed."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        log_tail: str = "",
        log_file: str | None = None,
        hint: str | None = None,
    ) -> None:
        details = message
        if log_tail:
            details += f"\n--- last lines of {log_file or 'its log'} ---\n{log_tail}"
        super().__init__(details, hint=hint)
        self.service = service
        self.log_tail = log_tail
        self.log_file = log_file
