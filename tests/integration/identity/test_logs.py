"""Logs carry no tokens, passwords or personal data, whatever happens on the wire."""

from __future__ import annotations

import logging
import uuid

import pytest

from bankmesh.identity.v1 import identity_service_pb2 as pb
from mesh.context import EndUser
from services.identity.app import Identity
from tests.support.mesh import TestMesh

from .conftest import acting_for, create_request, refusal, stub_for

pytestmark = pytest.mark.integration


async def test_a_whole_session_over_the_wire_logs_no_secret_and_no_personal_data(
    identity: Identity,
    mesh: TestMesh,
    grpc_identity: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sign-up, failed and good sign-ins, refresh, reuse, reads, logout: none of it leaks."""
    tag = uuid.uuid4().hex[:10]
    request = create_request(
        email=f"Logged.{tag}@Secret-Mail.example",
        full_name=f"Ottoline Logworthy-{tag}",
        phone_number="+4930" + str(uuid.uuid4().int)[:8],
        national_id=f"LG{tag.upper()}",
        password=f"log-me-not-{tag}",
    )
    wrong = f"wrong-password-{tag}"
    secrets: list[str] = [
        request.email,
        request.email.lower(),
        request.full_name,
        request.phone_number,
        request.national_id,
        request.password,
        wrong,
    ]
    caplog.set_level(logging.DEBUG)
    async with stub_for(mesh, grpc_identity) as stub:
        created = await stub.CreateCustomer(request)
        me = EndUser(created.user.user_id, created.customer.customer_id, frozenset({"customer"}))
        await refusal(stub.Login(pb.LoginRequest(email=request.email, password=wrong)))
        await refusal(stub.Login(pb.LoginRequest(email=f"x{tag}@nobody.example", password=wrong)))
        first = await stub.Login(pb.LoginRequest(email=request.email, password=request.password))
        second = await stub.RefreshToken(
            pb.RefreshTokenRequest(refresh_token=first.tokens.refresh_token)
        )
        await refusal(
            stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.tokens.refresh_token))
        )
        third = await stub.Login(pb.LoginRequest(email=request.email, password=request.password))
        with acting_for(me):
            await stub.GetCurrentUser(pb.GetCurrentUserRequest())
            await stub.GetCustomer(pb.GetCustomerRequest(customer_id=created.customer.customer_id))
            await stub.Logout(pb.LogoutRequest(refresh_token=third.tokens.refresh_token))
    for tokens in (first.tokens, second.tokens, third.tokens):
        secrets += [tokens.access_token, tokens.refresh_token]
        secrets.append(tokens.access_token.rsplit(".", 1)[1])  # the signature alone
        secrets.append(tokens.refresh_token.removeprefix("bmrt_"))

    assert caplog.records, "the calls must have logged something (access log at least)"
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in caplog.records
    )
    for secret in secrets:
        assert secret not in logged, "a token, a password or personal data reached the log"
    assert "refresh token reused" in logged  # the security-relevant line is there, without secrets
