"""Why the identity service says no.

Every refusal carries a `Reason` named as in `bankmesh.common.v1.ErrorReason`
(without its prefix), so one word means one thing on every wire.

    IdentityError                    (a Reason, a message, optionally a field)
     ├── InvalidRequest              INVALID_ARGUMENT / INVALID_ID: request shape
     ├── WeakPassword                WEAK_PASSWORD: shorter than 12 characters
     ├── UserAlreadyExists           USER_ALREADY_EXISTS: the email signs in someone
     ├── NotFound                    INVALID_ID sent as NOT_FOUND: the id names
     │                               nothing the caller may see (ErrorReason has
     │                               no CUSTOMER_NOT_FOUND; risk does the same)
     ├── PermissionDenied            PERMISSION_DENIED: the role is missing
     ├── InvalidCredentials          INVALID_CREDENTIALS: unknown email or wrong
     │                               password, never saying which
     ├── AccountLocked               ACCOUNT_LOCKED: too many failures; retry later
     └── RefreshRefused              a refresh token that buys nothing:
          ├── TokenInvalid           TOKEN_INVALID (unknown, revoked, logged out)
          ├── TokenExpired           TOKEN_EXPIRED (past the session's absolute lifetime)
          └── RefreshTokenReused     REFRESH_TOKEN_REUSED (the session is now revoked)
"""

from __future__ import annotations

import enum

from services.common.errors import ServiceError


class Reason(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_ID = "INVALID_ID"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    TOKEN_INVALID = "TOKEN_INVALID"  # noqa: S105 - a reason name, not a secret
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # noqa: S105 - a reason name, not a secret
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"  # noqa: S105 - a reason name, not a secret
    PERMISSION_DENIED = "PERMISSION_DENIED"
    WEAK_PASSWORD = "WEAK_PASSWORD"  # noqa: S105 - a reason name, not a secret
    USER_ALREADY_EXISTS = "USER_ALREADY_EXISTS"


class IdentityError(ServiceError[Reason]):
    """A request the identity service refuses, with a reason a client can act on."""

    reason = Reason.INVALID_ARGUMENT


class InvalidRequest(IdentityError):
    reason = Reason.INVALID_ARGUMENT


class WeakPassword(IdentityError):
    reason = Reason.WEAK_PASSWORD


class UserAlreadyExists(IdentityError):
    reason = Reason.USER_ALREADY_EXISTS


class NotFound(IdentityError):
    reason = Reason.INVALID_ID


class PermissionDenied(IdentityError):
    reason = Reason.PERMISSION_DENIED


# One message for both causes: the answer must not tell an attacker which it was.
INVALID_CREDENTIALS_MESSAGE = "the email or the password is wrong"


class InvalidCredentials(IdentityError):
    reason = Reason.INVALID_CREDENTIALS

    def __init__(self) -> None:
        super().__init__(INVALID_CREDENTIALS_MESSAGE)


class AccountLocked(IdentityError):
    reason = Reason.ACCOUNT_LOCKED

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_seconds} seconds")
        self.retry_after_seconds = retry_after_seconds


class RefreshRefused(IdentityError):
    reason = Reason.TOKEN_INVALID


class TokenInvalid(RefreshRefused):
    reason = Reason.TOKEN_INVALID

    def __init__(self, message: str = "the refresh token is not valid; sign in again") -> None:
        super().__init__(message)


class TokenExpired(RefreshRefused):
    reason = Reason.TOKEN_EXPIRED

    def __init__(self) -> None:
        super().__init__("the session has reached its maximum lifetime; sign in again")


class RefreshTokenReused(RefreshRefused):
    reason = Reason.REFRESH_TOKEN_REUSED

    def __init__(self) -> None:
        super().__init__(
            "this refresh token was already used; the session is ended for safety, sign in again"
        )
