"""IdentityService over the mesh: mTLS, the policy, end users, and errors on the wire.

The server is the real one (`build_identity_server` with the mesh's
security); clients are the edge and the operator with their own
certificates, acting for people through signed end-user assertions.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.common.v1 import errors_pb2
from bankmesh.identity.v1 import identity_service_pb2 as pb
from mesh.context import EndUser
from mesh.tokens import (
    CLIENT_IP_HEADER,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    Jwks,
    session_revoked,
    verify_access_token,
)
from services.identity.app import Identity
from services.identity.domain.model import Role
from tests.support.mesh import TestMesh

from .conftest import (
    PASSWORD,
    acting_for,
    create_request,
    new_email,
    refusal,
    roles_of,
    rows,
    sign_up,
    stub_for,
)

pytestmark = pytest.mark.integration

REASONS = {v.name.removeprefix("ERROR_REASON_") for v in errors_pb2.ErrorReason.DESCRIPTOR.values}


async def staff_user(identity: Identity, *roles: Role) -> EndUser:
    user = await identity.directory.create_staff_user("test", new_email(), PASSWORD, roles)
    return EndUser(str(user.id), "", frozenset(roles))


# -- sign-up and reading people ----------------------------------------------------------------


async def test_a_person_signs_up_through_the_edge_and_reads_themselves(
    mesh: TestMesh, grpc_identity: int
) -> None:
    """CreateCustomer without an end user is self sign-up; GetCurrentUser then shows them."""
    request = create_request(national_id="NI55554321")
    async with stub_for(mesh, grpc_identity) as stub:
        created = await stub.CreateCustomer(request)
        assert created.customer.national_id_masked == "****4321"
        assert created.customer.email == request.email
        assert roles_of(created.user) == ["customer"]
        me = EndUser(created.user.user_id, created.customer.customer_id, frozenset({"customer"}))
        with acting_for(me):
            current = await stub.GetCurrentUser(pb.GetCurrentUserRequest())
    assert current.user.user_id == created.user.user_id
    assert current.customer.full_name == request.full_name
    assert current.customer.national_id_masked == "****4321"


async def test_signing_up_twice_with_one_email_is_refused(
    mesh: TestMesh, grpc_identity: int
) -> None:
    """The same address in another case is the same sign-in: USER_ALREADY_EXISTS."""
    request = create_request()
    async with stub_for(mesh, grpc_identity) as stub:
        await stub.CreateCustomer(request)
        again = create_request(email=request.email.upper())
        refused = await refusal(stub.CreateCustomer(again))
    assert (refused.code, refused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "USER_ALREADY_EXISTS")


async def test_a_short_password_is_refused_at_sign_up(mesh: TestMesh, grpc_identity: int) -> None:
    """Eleven characters: INVALID_ARGUMENT / WEAK_PASSWORD, field password; nothing is created."""
    request = create_request(password="elevenchars")
    async with stub_for(mesh, grpc_identity) as stub:
        refused = await refusal(stub.CreateCustomer(request))
        login = await refusal(stub.Login(pb.LoginRequest(email=request.email, password="x" * 12)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "WEAK_PASSWORD")
    assert refused.metadata["field"] == "password"
    assert login.reason == "INVALID_CREDENTIALS"


async def test_a_customer_cannot_register_other_customers(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """The policy lets only support and admin create customers on someone's behalf."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(alice.end_user):
            refused = await refusal(stub.CreateCustomer(create_request()))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )


async def test_support_registers_a_customer(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """A support agent's CreateCustomer makes a customer who can then sign in."""
    agent = await staff_user(identity, Role.SUPPORT)
    request = create_request()
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(agent):
            created = await stub.CreateCustomer(request)
        pair = await stub.Login(pb.LoginRequest(email=request.email, password=PASSWORD))
    assert created.customer.customer_id and pair.tokens.access_token


async def test_a_customer_reads_their_own_record_and_others_read_as_missing(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """Bob's id, or an id nobody has, gives Alice the very same NOT_FOUND."""
    alice = await sign_up(identity)
    bob = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(alice.end_user):
            mine = await stub.GetCustomer(pb.GetCustomerRequest(customer_id=str(alice.customer_id)))
            bobs = await refusal(
                stub.GetCustomer(pb.GetCustomerRequest(customer_id=str(bob.customer_id)))
            )
            nobodys = await refusal(
                stub.GetCustomer(pb.GetCustomerRequest(customer_id=str(uuid.uuid4())))
            )
    assert mine.customer.email == alice.email
    assert (bobs.code, bobs.reason) == (grpc.StatusCode.NOT_FOUND, "INVALID_ID")
    assert bobs == nobodys


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.AUDITOR, Role.ADMIN])
async def test_support_auditors_and_admins_read_any_customer_with_the_id_masked(
    identity: Identity, mesh: TestMesh, grpc_identity: int, role: Role
) -> None:
    """Staff who serve or audit see the record; the national id still only by its last four."""
    alice = await sign_up(identity, national_id="QQ12345678")
    staff = await staff_user(identity, role)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(staff):
            found = await stub.GetCustomer(
                pb.GetCustomerRequest(customer_id=str(alice.customer_id))
            )
    assert found.customer.national_id_masked == "****5678"
    assert "QQ12345678" not in str(found)


async def test_a_reviewer_reads_no_customer_records(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """Reviewing payments needs no personal data: PERMISSION_DENIED."""
    alice = await sign_up(identity)
    reviewer = await staff_user(identity, Role.REVIEWER)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(reviewer):
            refused = await refusal(
                stub.GetCustomer(pb.GetCustomerRequest(customer_id=str(alice.customer_id)))
            )
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED


async def test_get_current_user_needs_a_person(mesh: TestMesh, grpc_identity: int) -> None:
    """The edge on its own has no current user: PERMISSION_DENIED by the policy."""
    async with stub_for(mesh, grpc_identity) as stub:
        refused = await refusal(stub.GetCurrentUser(pb.GetCurrentUserRequest()))
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED


# -- signing in over the wire ------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_are_the_same_answer_on_the_wire(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """Same code, reason, message and metadata: UNAUTHENTICATED / INVALID_CREDENTIALS."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        unknown = await refusal(stub.Login(pb.LoginRequest(email=new_email(), password=PASSWORD)))
        wrong = await refusal(
            stub.Login(pb.LoginRequest(email=alice.email, password="wrong password!"))
        )
    assert unknown == wrong
    assert (wrong.code, wrong.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")


async def test_a_locked_sign_in_says_when_to_retry(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """After five failures: RESOURCE_EXHAUSTED / ACCOUNT_LOCKED with retry_after_seconds."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        for _ in range(5):
            await refusal(
                stub.Login(pb.LoginRequest(email=alice.email, password="wrong password!"))
            )
        locked = await refusal(stub.Login(pb.LoginRequest(email=alice.email, password=PASSWORD)))
    assert (locked.code, locked.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ACCOUNT_LOCKED")
    assert 0 < int(locked.metadata["retry_after_seconds"]) <= 900


async def test_tokens_from_login_verify_against_get_jwks(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """What the edge does: fetch GetJwks, verify Login's access token with mesh.tokens."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        jwks = Jwks.from_proto(await stub.GetJwks(pb.GetJwksRequest()))
        login = await stub.Login(pb.LoginRequest(email=alice.email, password=PASSWORD))
        refreshed = await stub.RefreshToken(
            pb.RefreshTokenRequest(refresh_token=login.tokens.refresh_token)
        )
    now = identity.clock.now().timestamp()
    for tokens in (login.tokens, refreshed.tokens):
        assert tokens.token_type == "Bearer" and tokens.expires_in == 900
        claims = verify_access_token(
            tokens.access_token, jwks, issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, now=now
        )
        assert claims.subject == str(alice.user_id)


async def test_logout_over_the_wire_ends_the_session_for_the_edge(
    identity: Identity,
    identity_redis: redis.asyncio.Redis,
    mesh: TestMesh,
    grpc_identity: int,
) -> None:
    """Logout (as the signed-in user) revokes the sid the edge checks, and refresh stops."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        login = await stub.Login(pb.LoginRequest(email=alice.email, password=PASSWORD))
        jwks = Jwks.from_proto(await stub.GetJwks(pb.GetJwksRequest()))
        claims = verify_access_token(
            login.tokens.access_token,
            jwks,
            issuer=DEFAULT_ISSUER,
            audience=DEFAULT_AUDIENCE,
            now=identity.clock.now().timestamp(),
        )
        assert not await session_revoked(identity_redis, claims.session_id)
        with acting_for(alice.end_user):
            await stub.Logout(pb.LogoutRequest(refresh_token=login.tokens.refresh_token))
        refused = await refusal(
            stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=login.tokens.refresh_token))
        )
    assert await session_revoked(identity_redis, claims.session_id)
    assert (refused.code, refused.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_reusing_a_refresh_token_over_the_wire_is_refresh_token_reused(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """The second use of a spent token: UNAUTHENTICATED / REFRESH_TOKEN_REUSED."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        login = await stub.Login(pb.LoginRequest(email=alice.email, password=PASSWORD))
        token = pb.RefreshTokenRequest(refresh_token=login.tokens.refresh_token)
        await stub.RefreshToken(token)
        reused = await refusal(stub.RefreshToken(token))
    assert (reused.code, reused.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_REUSED",
    )


async def test_the_edge_passes_the_client_address_into_security_events(
    identity: Identity, identity_engine: AsyncEngine, mesh: TestMesh, grpc_identity: int
) -> None:
    """x-bankmesh-client-ip from the edge lands in the event; a value that is no IP does not."""
    alice = await sign_up(identity)
    request = pb.LoginRequest(email=alice.email, password=PASSWORD)
    async with stub_for(mesh, grpc_identity) as edge:
        await edge.Login(request, metadata=((CLIENT_IP_HEADER, "2001:db8::7"),))
        await edge.Login(request, metadata=((CLIENT_IP_HEADER, "1.2.3.4 admin=true"),))
    events = await rows(
        identity_engine,
        "SELECT client_ip FROM identity.security_events"
        " WHERE user_id = :u AND event = 'sign_in' ORDER BY seq",
        u=alice.user_id,
    )
    assert [e.client_ip for e in events] == ["2001:db8::7", ""]


# -- roles ------------------------------------------------------------------------------------


async def test_an_admin_assigns_and_revokes_a_role(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """AssignRole adds, RevokeRole removes; the answer shows the user's roles after."""
    admin = await staff_user(identity, Role.ADMIN)
    agent = await staff_user(identity, Role.SUPPORT)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(admin):
            added = await stub.AssignRole(
                pb.AssignRoleRequest(user_id=agent.user_id, role=pb.ROLE_REVIEWER)
            )
            removed = await stub.RevokeRole(
                pb.RevokeRoleRequest(user_id=agent.user_id, role=pb.ROLE_SUPPORT)
            )
    assert roles_of(added.user) == ["reviewer", "support"]
    assert roles_of(removed.user) == ["reviewer"]


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.AUDITOR, Role.REVIEWER])
async def test_only_admins_manage_roles(
    identity: Identity, mesh: TestMesh, grpc_identity: int, role: Role
) -> None:
    """Support, auditors and reviewers get PERMISSION_DENIED, even to promote themselves."""
    staff = await staff_user(identity, role)
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(staff):
            refused = await refusal(
                stub.AssignRole(pb.AssignRoleRequest(user_id=staff.user_id, role=pb.ROLE_ADMIN))
            )
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED


async def test_the_edge_alone_cannot_manage_roles_but_the_operator_can(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """Without a person, only the operator's certificate may assign roles."""
    agent = await staff_user(identity, Role.SUPPORT)
    request = pb.AssignRoleRequest(user_id=agent.user_id, role=pb.ROLE_AUDITOR)
    async with stub_for(mesh, grpc_identity, "edge") as edge:
        refused = await refusal(edge.AssignRole(request))
    async with stub_for(mesh, grpc_identity, "operator") as operator:
        assigned = await operator.AssignRole(request)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
    )
    assert "auditor" in roles_of(assigned.user)


async def test_revoking_a_role_ends_the_users_sessions_at_once(
    identity: Identity,
    identity_redis: redis.asyncio.Redis,
    mesh: TestMesh,
    grpc_identity: int,
) -> None:
    """Tokens minted with the old role stop at the edge now, not in 15 minutes."""
    admin = await staff_user(identity, Role.ADMIN)
    email = new_email()
    agent = await identity.directory.create_staff_user(
        "test", email, PASSWORD, [Role.SUPPORT, Role.REVIEWER]
    )
    async with stub_for(mesh, grpc_identity) as stub:
        login = await stub.Login(pb.LoginRequest(email=email, password=PASSWORD))
        claims = verify_access_token(
            login.tokens.access_token,
            Jwks.from_proto(await stub.GetJwks(pb.GetJwksRequest())),
            issuer=DEFAULT_ISSUER,
            audience=DEFAULT_AUDIENCE,
            now=identity.clock.now().timestamp(),
        )
        with acting_for(admin):
            await stub.RevokeRole(
                pb.RevokeRoleRequest(user_id=str(agent.id), role=pb.ROLE_REVIEWER)
            )
        refused = await refusal(
            stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=login.tokens.refresh_token))
        )
    assert await session_revoked(identity_redis, claims.session_id)
    assert refused.reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    ("target", "role", "reason", "code"),
    [
        ("customer", pb.ROLE_ADMIN, "INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT),
        ("staff", pb.ROLE_CUSTOMER, "INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT),
        ("staff", pb.ROLE_UNSPECIFIED, "INVALID_ARGUMENT", grpc.StatusCode.INVALID_ARGUMENT),
        ("nobody", pb.ROLE_AUDITOR, "INVALID_ID", grpc.StatusCode.NOT_FOUND),
        ("malformed", pb.ROLE_AUDITOR, "INVALID_ID", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_role_changes_that_make_no_sense_are_refused(
    identity: Identity,
    mesh: TestMesh,
    grpc_identity: int,
    target: str,
    role: pb.Role,
    reason: str,
    code: grpc.StatusCode,
) -> None:
    """Staff roles for a customer sign-in, the customer role for staff, unknown users or roles."""
    admin = await staff_user(identity, Role.ADMIN)
    if target == "customer":
        target_id = str((await sign_up(identity)).user_id)
    elif target == "staff":
        target_id = (await staff_user(identity, Role.SUPPORT)).user_id
    else:
        target_id = str(uuid.uuid4()) if target == "nobody" else "not-a-uuid"
    async with stub_for(mesh, grpc_identity) as stub:
        with acting_for(admin):
            refused = await refusal(
                stub.AssignRole(pb.AssignRoleRequest(user_id=target_id, role=role))
            )
    assert (refused.code, refused.reason) == (code, reason)


# -- the contract -----------------------------------------------------------------------------


async def test_every_reason_identity_sends_is_an_error_reason_of_the_contract(
    identity: Identity, mesh: TestMesh, grpc_identity: int
) -> None:
    """Reasons on the wire are ErrorReason names, so REST and gRPC clients can branch on them."""
    alice = await sign_up(identity)
    async with stub_for(mesh, grpc_identity) as stub:
        calls: list[Awaitable[Any]] = [
            stub.Login(pb.LoginRequest(email=alice.email, password="wrong password!")),
            stub.Login(pb.LoginRequest(email="", password="")),
            stub.RefreshToken(pb.RefreshTokenRequest(refresh_token="bmrt_nope")),
            stub.CreateCustomer(create_request(email=alice.email)),
            stub.CreateCustomer(create_request(password="short")),
            stub.CreateCustomer(create_request(email="not an email")),
        ]
        reasons = {(await refusal(call)).reason for call in calls}
    assert reasons <= REASONS, reasons - REASONS
