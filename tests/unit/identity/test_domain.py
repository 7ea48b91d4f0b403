"""The identity domain: who may do what, sign-in lockout, refresh verdicts, personal data rules."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.identity.domain.access import Caller
from services.identity.domain.errors import InvalidRequest, NotFound, PermissionDenied
from services.identity.domain.model import (
    FailedSignIns,
    Lockout,
    mask_national_id,
    normalize_email,
    personal_data,
)
from services.identity.domain.sessions import (
    REFRESH_TOKEN_PREFIX,
    RefreshToken,
    Session,
    Verdict,
    hash_refresh_token,
    judge,
    new_refresh_token,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CUSTOMER_ID = uuid.uuid4()


def customer(customer_id: uuid.UUID = CUSTOMER_ID) -> Caller:
    return Caller.for_end_user("edge", "u-1", str(customer_id), frozenset({"customer"}))


def staff(*roles: str) -> Caller:
    return Caller.for_end_user("edge", "u-staff", "", frozenset(roles))


# -- access ---------------------------------------------------------------------------------


def test_a_customer_reads_their_own_record_and_no_one_elses() -> None:
    """Another customer's id answers NotFound, exactly like an id nobody has."""
    customer().require_read_customer(CUSTOMER_ID)
    with pytest.raises(NotFound):
        customer().require_read_customer(uuid.uuid4())


@pytest.mark.parametrize("role", ["support", "auditor", "admin"])
def test_support_auditors_and_admins_read_any_customer(role: str) -> None:
    """Staff who serve or audit customers may read them."""
    staff(role).require_read_customer(uuid.uuid4())


def test_a_reviewer_reads_no_customer_records() -> None:
    """Reviewing payments needs no personal data."""
    with pytest.raises(PermissionDenied):
        staff("reviewer").require_read_customer(uuid.uuid4())


def test_the_edge_without_an_end_user_reads_no_customer_but_the_operator_may() -> None:
    """Service calls: the edge always acts for someone; the operator is trusted."""
    with pytest.raises(PermissionDenied):
        Caller.for_service("edge").require_read_customer(uuid.uuid4())
    Caller.for_service("operator").require_read_customer(uuid.uuid4())


def test_customers_are_created_by_self_sign_up_or_by_support_and_admin() -> None:
    """No end user (sign-up), support or admin may create; a customer or auditor may not."""
    Caller.for_service("edge").require_create_customer()
    staff("support").require_create_customer()
    staff("admin").require_create_customer()
    for caller in (customer(), staff("auditor"), staff("reviewer")):
        with pytest.raises(PermissionDenied):
            caller.require_create_customer()


def test_only_admins_and_the_operator_manage_roles() -> None:
    """Support, auditors, reviewers, customers and the edge alone cannot."""
    staff("admin").require_manage_roles()
    Caller.for_service("operator").require_manage_roles()
    for caller in (
        customer(),
        staff("support"),
        staff("auditor"),
        staff("reviewer"),
        Caller.for_service("edge"),
    ):
        with pytest.raises(PermissionDenied):
            caller.require_manage_roles()


# -- lockout --------------------------------------------------------------------------------


def test_the_fifth_consecutive_failure_locks_for_the_lock_period() -> None:
    """Four failures count; the fifth locks for 15 minutes and restarts the count."""
    policy = Lockout(max_failures=5, lock_seconds=900)
    state = FailedSignIns()
    for attempt in range(4):
        state = state.after_failure(T0, policy)
        assert state.failures == attempt + 1 and not state.locked(T0)
    state = state.after_failure(T0, policy)
    assert state.locked(T0) and state.failures == 0
    assert state.retry_after(T0) == 900
    assert state.locked(T0 + timedelta(seconds=899))
    assert not state.locked(T0 + timedelta(seconds=900))


# -- refresh verdicts -------------------------------------------------------------------------


def session(ended_at: datetime | None = None, end_reason: str = "") -> Session:
    return Session(uuid.uuid4(), uuid.uuid4(), T0, T0 + timedelta(days=30), ended_at, end_reason)


def token(used: bool = False) -> RefreshToken:
    return RefreshToken(uuid.uuid4(), uuid.uuid4(), b"h" * 32, T0, T0 if used else None)


def test_an_unused_token_of_a_live_session_rotates() -> None:
    """The normal case."""
    assert judge(session(), token(), T0 + timedelta(days=1)) is Verdict.ROTATE


def test_a_spent_token_presented_again_is_reuse() -> None:
    """Reuse is detected whatever else holds."""
    assert judge(session(), token(used=True), T0) is Verdict.REUSED


def test_a_session_past_its_absolute_lifetime_expires_however_often_refreshed() -> None:
    """30 days after sign-in, no refresh works."""
    assert judge(session(), token(), T0 + timedelta(days=30)) is Verdict.EXPIRED


def test_an_ended_session_refreshes_nothing() -> None:
    """After logout or reuse detection every token of the family is dead."""
    ended = session(ended_at=T0, end_reason="logout")
    assert judge(ended, token(), T0) is Verdict.ENDED
    assert judge(ended, token(used=True), T0) is Verdict.ENDED


def test_a_refresh_token_is_256_random_bits_in_base64url_stored_as_sha256() -> None:
    """Opaque, 32 bytes of entropy, prefixed for secret scanners; only its SHA-256 is kept."""
    value, digest = new_refresh_token()
    assert value.startswith(REFRESH_TOKEN_PREFIX)
    body = value.removeprefix(REFRESH_TOKEN_PREFIX)
    assert len(base64.urlsafe_b64decode(body + "=")) == 32
    assert digest == hashlib.sha256(value.encode()).digest() == hash_refresh_token(value)
    assert len({new_refresh_token()[0] for _ in range(1000)}) == 1000


# -- personal data ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["Alice@Example.COM", "  alice@example.com\t", "ALICE@EXAMPLE.COM "]
)
def test_emails_are_trimmed_and_lower_cased(raw: str) -> None:
    """One address, however it is typed, is one sign-in."""
    assert normalize_email(raw) == "alice@example.com"


@pytest.mark.parametrize("raw", ["", "   ", "alice", "alice@", "@example.com", "a b@c.d", "a@b"])
def test_things_that_are_not_emails_are_refused(raw: str) -> None:
    """INVALID_ARGUMENT naming the email field."""
    with pytest.raises(InvalidRequest) as caught:
        normalize_email(raw)
    assert caught.value.field == "email"


def test_personal_data_is_normalised() -> None:
    """Names collapse spaces, phones lose separators, national ids are upper case."""
    data = personal_data(
        "  Alice   Liddell ", "Alice@Example.com", "+44 (20) 7946-0000", "ab-123456c"
    )
    assert data.full_name == "Alice Liddell"
    assert data.phone_number == "+442079460000"
    assert data.national_id == "AB123456C"
    assert data.email == "alice@example.com"


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("full_name", ("", "a@b.co", "+4400000000", "AB1234")),
        ("full_name", ("bad\x00name", "a@b.co", "+4400000000", "AB1234")),
        ("phone_number", ("Alice", "a@b.co", "call me", "AB1234")),
        ("national_id", ("Alice", "a@b.co", "+4400000000", "12")),
        ("national_id", ("Alice", "a@b.co", "+4400000000", "AB'; DROP")),
    ],
)
def test_malformed_personal_data_names_the_field(field: str, values: tuple[str, ...]) -> None:
    """Each malformed value is refused with its field."""
    with pytest.raises(InvalidRequest) as caught:
        personal_data(*values)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("national_id", "masked"),
    [("AB123456C", "****456C"), ("12345", "****2345"), ("1234", "****"), ("12", "****")],
)
def test_a_national_id_is_shown_only_by_its_last_four_characters(
    national_id: str, masked: str
) -> None:
    """The mask hides the length too; ids of four characters or fewer show nothing."""
    assert mask_national_id(national_id) == masked
