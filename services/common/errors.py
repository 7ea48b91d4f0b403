"""The base of every service's refusals: a message, a reason code, the field at fault.

Each service names its reasons in its own `Reason` enum (the `ErrorReason`
names of common/v1/errors.proto) and derives its error tree from
`ServiceError[Reason]`; its entrypoint maps the reason to a gRPC code.
Pure standard library, so the domains can use it.
"""

from __future__ import annotations

from typing import Generic, TypeVar

R = TypeVar("R", bound=str)


class ServiceError(Exception, Generic[R]):
    """A request the service refuses, with the reason a client can act on."""

    reason: R

    def __init__(self, message: str, *, reason: R | None = None, field: str = "") -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.field = field

    @property
    def message(self) -> str:
        return str(self.args[0])
