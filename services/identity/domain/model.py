"""People: users who sign in, customers they sign in for, and the rules on their data.

A `User` signs in with an email and a password and holds roles. A customer's
user points at a `Customer` record (their personal data); staff users have
none. Personal data lives here in plaintext only: the adapters encrypt it
before it reaches the database (see adapters/pii.py), and the email a user
signs in with is kept only as a keyed blind index.

Rules that need nothing but the values themselves:

* emails are normalised (surrounding spaces dropped, lower case) before they
  are indexed or compared, so "Alice@Example.com " signs in as alice@example.com;
* a password has at least 12 characters (WEAK_PASSWORD) and at most 1024,
  which bounds the work of hashing it;
* a national id is shown masked to its last four characters;
* `Lockout`: after `max_failures` consecutive failed sign-ins for one email
  (known to us or not, so the lock says nothing about who exists), sign-in is
  refused for `lock_seconds`, even with the right password.
"""

from __future__ import annotations

import enum
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import InvalidRequest, WeakPassword


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    AUDITOR = "auditor"
    ADMIN = "admin"
    REVIEWER = "reviewer"


STAFF_ROLES = frozenset({Role.SUPPORT, Role.AUDITOR, Role.ADMIN, Role.REVIEWER})

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_EMAIL_CHARS = 254
MAX_NAME_CHARS = 200

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9]{6,15}")
_NATIONAL_ID = re.compile(r"[A-Za-z0-9]{4,32}")


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    roles: frozenset[Role]
    password_hash: str
    created_at: datetime
    customer_id: uuid.UUID | None = None

    @property
    def is_customer(self) -> bool:
        return self.customer_id is not None


@dataclass(frozen=True, slots=True)
class PersonalData:
    """A customer's personal data, validated and normalised (plaintext: never stored as such)."""

    full_name: str
    email: str
    phone_number: str
    national_id: str

    def __repr__(self) -> str:
        # Never let a stray log line or traceback print the values.
        return "PersonalData(<redacted>)"


@dataclass(frozen=True, slots=True)
class Customer:
    id: uuid.UUID
    data: PersonalData
    created_at: datetime

    @property
    def national_id_masked(self) -> str:
        return mask_national_id(self.data.national_id)


def canonical_email(raw: str) -> str:
    """Surrounding spaces dropped, lower case: what is indexed and compared."""
    return unicodedata.normalize("NFC", raw).strip().lower()


def normalize_email(raw: str) -> str:
    """The canonical form of an email address; InvalidRequest if it is not one."""
    email = canonical_email(raw)
    if not email:
        raise InvalidRequest("email is required", field="email")
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(email):
        raise InvalidRequest("email is not an email address", field="email")
    return email


def personal_data(full_name: str, email: str, phone_number: str, national_id: str) -> PersonalData:
    """Validated, normalised personal data for a new customer."""
    name = " ".join(unicodedata.normalize("NFC", full_name).split())
    if not name:
        raise InvalidRequest("full_name is required", field="full_name")
    if len(name) > MAX_NAME_CHARS or any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidRequest("full_name is too long or has control characters", field="full_name")
    phone = re.sub(r"[\s().-]", "", phone_number)
    if not _PHONE.fullmatch(phone):
        raise InvalidRequest(
            "phone_number must be digits with an optional leading +", field="phone_number"
        )
    national = re.sub(r"[\s-]", "", national_id).upper()
    if not _NATIONAL_ID.fullmatch(national):
        raise InvalidRequest("national_id must be 4 to 32 letters or digits", field="national_id")
    return PersonalData(name, normalize_email(email), phone, national)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidRequest(
            f"a password has at most {MAX_PASSWORD_CHARS} characters", field="password"
        )


def mask_national_id(national_id: str) -> str:
    """Four asterisks and the last four characters; the length of the id stays hidden."""
    if len(national_id) <= 4:
        return "****"
    return "****" + national_id[-4:]


# -- sign-in failures ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lockout:
    max_failures: int = 5
    lock_seconds: int = 900

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lock_seconds < 1:
            raise ValueError("a lockout needs at least one failure and one second")


@dataclass(frozen=True, slots=True)
class FailedSignIns:
    """Consecutive failures for one email (by blind index) and the lock they led to."""

    failures: int = 0
    locked_until: datetime | None = None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def retry_after(self, now: datetime) -> int:
        if self.locked_until is None:
            return 0
        return max(1, int((self.locked_until - now).total_seconds() + 0.999))

    def after_failure(self, now: datetime, policy: Lockout) -> FailedSignIns:
        """One more failure; the `max_failures`-th locks and starts counting again."""
        failures = self.failures + 1
        if failures >= policy.max_failures:
            return FailedSignIns(0, now + timedelta(seconds=policy.lock_seconds))
        return FailedSignIns(failures, self.locked_until)


@dataclass(frozen=True, slots=True)
class RoleChange:
    user: User
    changed: bool
    ended_sessions: tuple[uuid.UUID, ...] = field(default_factory=tuple)
