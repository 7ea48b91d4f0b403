"""What the edge sends along with a call, seen by a gRPC server over mTLS."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from bankmesh.account.v1 import account_service_pb2 as svc
from mesh import assertions, pki
from mesh.client import MeshClient
from mesh.context import EndUser
from mesh.edge.app import build_edge_app
from mesh.edge.auth import AccessTokenVerifier, Authenticator, KeyRing
from mesh.edge.ratelimit import RateLimiter
from mesh.edge.upstream import GrpcUpstream
from mesh.tls import server_credentials
from tests.support.mesh import TestMesh
from tests.unit.edge.signing import TokenIssuer

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class Recorder:
    metadata: list[dict[str, str]] = field(default_factory=list)
    remaining: list[float | None] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK

    async def list_accounts(
        self, request: svc.ListAccountsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> svc.ListAccountsResponse:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        self.remaining.append(context.time_remaining())
        if self.code is not grpc.StatusCode.OK:
            await context.abort(self.code, "refused")
        return svc.ListAccountsResponse()


@dataclass
class Setup:
    client: httpx.AsyncClient
    recorder: Recorder
    issuer: TokenIssuer
    pki: TestMesh


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    mesh = TestMesh(tmp_path / "pki")
    recorder = Recorder()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bankmesh.account.v1.AccountService",
        {
            "ListAccounts": grpc.unary_unary_rpc_method_handler(
                recorder.list_accounts,
                request_deserializer=svc.ListAccountsRequest.FromString,
                response_serializer=svc.ListAccountsResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(mesh.identity_dir("account")))
    await server.start()
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"services": {"account": [f"127.0.0.1:{port}"]}}))
    client = MeshClient(dataclasses.replace(mesh.env("edge"), endpoints_file=endpoints))
    issuer = TokenIssuer()
    keys = KeyRing(issuer.jwks)
    await keys.refresh()

    async def never_revoked(session_id: str) -> bool:
        return False

    app = build_edge_app(
        upstream=GrpcUpstream(client.channel),
        authenticator=Authenticator(keys, AccessTokenVerifier(), never_revoked),
        limiter=RateLimiter(None),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://edge.test"
    ) as http:
        yield Setup(http, recorder, issuer, mesh)
    await client.close()
    await server.stop(grace=None)


async def test_request_id_trace_context_and_deadline_reach_the_service(setup: Setup) -> None:
    """X-Request-Id, traceparent and X-Request-Timeout arrive as gRPC metadata and deadline."""
    token = setup.issuer.customer("c-1")
    response = await setup.client.get(
        "/v1/accounts",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Request-Id": "req-abc",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
            "X-Request-Timeout": "3",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-abc"
    seen = setup.recorder.metadata[-1]
    assert seen["x-request-id"] == "req-abc"
    assert seen["traceparent"].split("-")[1] == TRACE_ID
    assert seen["x-bankmesh-client-ip"] == "127.0.0.1"
    remaining = setup.recorder.remaining[-1]
    assert remaining is not None and 2.0 < remaining <= 3.0


async def test_the_end_user_arrives_signed_by_the_edge_for_the_callee(setup: Setup) -> None:
    """The token's user becomes an end-user assertion the account service can verify."""
    token = setup.issuer.token("u-1", "c-1", ("customer",))
    await setup.client.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assertion = setup.recorder.metadata[-1][assertions.HEADER]
    edge_cert = (setup.pki.identity_dir("edge") / "cert.pem").read_bytes()
    user = assertions.verify(
        assertion,
        peer_certificate_pem=edge_cert,
        issuer=pki.spiffe_id("edge"),
        audience=pki.spiffe_id("account"),
    )
    assert user == EndUser("u-1", "c-1", frozenset({"customer"}))


async def test_a_grpc_failure_without_details_still_has_a_reason(setup: Setup) -> None:
    """A bare PERMISSION_DENIED from a service is a 403 whose reason names the code."""
    setup.recorder.code = grpc.StatusCode.PERMISSION_DENIED
    token = setup.issuer.customer("c-1")
    response = await setup.client.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json()["details"][0]["reason"] == "PERMISSION_DENIED"


async def test_a_service_missing_from_endpoints_is_503(setup: Setup) -> None:
    """No payment service published: 503 DEPENDENCY_UNAVAILABLE, not a crash."""
    token = setup.issuer.customer("c-1")
    response = await setup.client.get("/v1/payments", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.json()["details"][0]["reason"] == "DEPENDENCY_UNAVAILABLE"
