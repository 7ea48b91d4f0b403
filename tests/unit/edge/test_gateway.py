"""The edge's HTTP behaviour with fake services: tokens, headers, limits, errors, readiness."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from bankmesh.payment.v1 import payment_service_pb2 as payments
from mesh.context import EndUser
from mesh.edge.ratelimit import Limit, Rule
from mesh.edge.settings import EdgeSettings
from mesh.edge.upstream import UpstreamError
from mesh.errors import WireError
from tests.unit.edge.conftest import Edge, make_edge

PAYMENT = {
    "sourceAccountId": "a",
    "destinationAccountId": "b",
    "amount": {"currencyCode": "EUR", "minorUnits": "100"},
}


def reason(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}
    return str(body["details"][0]["reason"])


# --- tokens -----------------------------------------------------------------------------


async def test_a_protected_route_without_a_token_is_401_with_bearer_challenge(edge: Edge) -> None:
    """No Authorization header: 401, WWW-Authenticate: Bearer, and nothing reaches a service."""
    response = await edge.client.get("/v1/accounts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="bankmesh"'
    assert reason(response) == "TOKEN_INVALID"
    assert edge.upstream.calls == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer ", "Token x.y.z"],
)
async def test_a_malformed_token_is_401_invalid_token(edge: Edge, authorization: str) -> None:
    """Garbage, other schemes and empty tokens are refused as invalid_token."""
    response = await edge.client.get("/v1/accounts", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="bankmesh"')
    assert reason(response) == "TOKEN_INVALID"


async def test_an_expired_token_is_401_token_expired(edge: Edge) -> None:
    """exp in the past (beyond the skew) reads TOKEN_EXPIRED, so the app knows to refresh."""
    token = edge.issuer.token(issued_at=time.time() - 1200, lifetime=600)
    response = await edge.client.get("/v1/accounts", headers=edge.bearer(token))
    assert response.status_code == 401
    assert reason(response) == "TOKEN_EXPIRED"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},
        {"typ": "bankmesh-end-user+jwt"},
        {"typ": "refresh+jwt"},
        {"kid": "someone-elses-key"},
        {"kid": "../../etc/passwd"},
        {"jku": "https://attacker.example/jwks.json", "kid": "attacker"},
    ],
)
async def test_a_token_of_the_wrong_type_or_key_is_401(edge: Edge, header: dict[str, str]) -> None:
    """Only at+jwt access tokens signed by a key of the local JWKS pass; jku is never followed."""
    token = edge.issuer.token(header=header)
    response = await edge.client.get("/v1/accounts", headers=edge.bearer(token))
    assert response.status_code == 401
    assert reason(response) == "TOKEN_INVALID"


@pytest.mark.parametrize("claims", [{"aud": "someone-else"}, {"iss": "https://evil.example"}])
async def test_a_token_for_another_audience_or_issuer_is_401(
    edge: Edge, claims: dict[str, str]
) -> None:
    """aud and iss are pinned."""
    response = await edge.client.get(
        "/v1/accounts", headers=edge.bearer(edge.issuer.token(claims=claims))
    )
    assert response.status_code == 401


async def test_alg_none_and_hs256_with_the_public_key_are_401(edge: Edge) -> None:
    """The algorithm allowlist is ES256 alone."""
    claims = jwt.decode(edge.issuer.token(), options={"verify_signature": False})
    public_pem = edge.issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = jwt.encode(
        claims, "", algorithm="none", headers={"typ": "at+jwt", "kid": edge.issuer.kid}
    )
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"at+jwt","kid":"test-key-1"}')
    body = unsigned.split(".")[1].encode()
    mac = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    confused = b".".join([header, body, jwt.utils.base64url_encode(mac)]).decode()
    for token in (unsigned, confused, unsigned.rsplit(".", 1)[0] + ".AAAA"):
        response = await edge.client.get("/v1/accounts", headers=edge.bearer(token))
        assert response.status_code == 401, token


async def test_a_valid_token_becomes_the_end_user_of_the_call(edge: Edge) -> None:
    """sub, cid and roles reach mesh.context.end_user for the outbound interceptor to sign."""
    token = edge.issuer.token("u-7", "c-7", ("customer",))
    response = await edge.client.get("/v1/accounts", headers=edge.bearer(token))
    assert response.status_code == 200
    assert edge.upstream.last.end_user == EndUser("u-7", "c-7", frozenset({"customer"}))
    assert edge.upstream.last.route.grpc_path == "/bankmesh.account.v1.AccountService/ListAccounts"


async def test_a_revoked_session_is_401(edge: Edge) -> None:
    """After logout the session id is revoked, and its still-valid tokens stop working."""
    edge.sessions.revoked.add("session-u-9")
    token = edge.issuer.token("u-9")
    response = await edge.client.get("/v1/accounts", headers=edge.bearer(token))
    assert response.status_code == 401
    assert reason(response) == "TOKEN_INVALID"


async def test_without_the_session_store_reads_pass_and_writes_are_503(edge: Edge) -> None:
    """Redis down: a GET goes through on the token's own validity; a POST is refused."""
    edge.sessions.down = True
    assert (await edge.client.get("/v1/accounts", headers=edge.as_customer())).status_code == 200
    response = await edge.client.post("/v1/payments", json=PAYMENT, headers=edge.as_customer())
    assert response.status_code == 503
    assert reason(response) == "DEPENDENCY_UNAVAILABLE"
    assert [c.route.method.name for c in edge.upstream.calls] == ["ListAccounts"]


async def test_login_and_refresh_need_no_token_and_never_carry_a_user(edge: Edge) -> None:
    """Sign-in routes ignore the Authorization header, even a stale one."""
    expired = edge.issuer.token(issued_at=time.time() - 3600)
    for path in ("/v1/auth/login", "/v1/auth/refresh"):
        response = await edge.client.post(path, json={}, headers=edge.bearer(expired))
        assert response.status_code == 200, response.text
        assert edge.upstream.last.end_user is None
    assert (await edge.client.get("/v1/auth/jwks")).status_code == 200


async def test_sign_up_is_anonymous_unless_staff_send_a_token(edge: Edge) -> None:
    """CreateCustomer works without a token; with one, the staff member is the end user."""
    assert (await edge.client.post("/v1/customers", json={"fullName": "A"})).status_code == 200
    assert edge.upstream.last.end_user is None
    staff = edge.issuer.token("s-1", "", ("support",))
    response = await edge.client.post(
        "/v1/customers", json={"fullName": "B"}, headers=edge.bearer(staff)
    )
    assert response.status_code == 200
    assert edge.upstream.last.end_user == EndUser("s-1", "", frozenset({"support"}))


async def test_every_other_route_needs_a_token(edge: Edge) -> None:
    """Logout, /v1/me, payments, accounts: 401 without a token."""
    for method, path in [
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/me"),
        ("GET", "/v1/payments/p"),
        ("POST", "/v1/accounts/a:freeze"),
        ("DELETE", "/v1/users/u/roles/ROLE_ADMIN"),
    ]:
        assert (await edge.client.request(method, path)).status_code == 401, path


# --- headers ----------------------------------------------------------------------------


async def test_the_idempotency_key_header_fills_the_field(edge: Edge) -> None:
    """Idempotency-Key becomes CreatePaymentRequest.idempotency_key when the body has none."""
    headers = {**edge.as_customer(), "Idempotency-Key": "key-1"}
    assert (
        await edge.client.post("/v1/payments", json=PAYMENT, headers=headers)
    ).status_code == 200
    assert isinstance(edge.upstream.last.request, payments.CreatePaymentRequest)
    assert edge.upstream.last.request.idempotency_key == "key-1"
    refund = await edge.client.post(
        "/v1/payments/p-1:refund", json={}, headers={**headers, "Idempotency-Key": "r-1"}
    )
    assert refund.status_code == 200
    assert edge.upstream.last.request.idempotency_key == "r-1"


async def test_an_idempotency_key_in_header_and_body_must_agree(edge: Edge) -> None:
    """The same key twice is fine; two different keys are a 400 naming the field."""
    body = {**PAYMENT, "idempotencyKey": "key-1"}
    same = {**edge.as_customer(), "Idempotency-Key": "key-1"}
    assert (await edge.client.post("/v1/payments", json=body, headers=same)).status_code == 200
    other = {**edge.as_customer(), "Idempotency-Key": "key-2"}
    response = await edge.client.post("/v1/payments", json=body, headers=other)
    assert response.status_code == 400
    assert response.json()["details"][0]["metadata"] == {"field": "idempotency_key"}


async def test_the_client_context_is_what_the_edge_saw(edge: Edge) -> None:
    """ip_address and user_agent of a payment come from the connection, not the body."""
    body = {**PAYMENT, "clientContext": {"ipAddress": "1.2.3.4", "deviceId": "phone-1"}}
    headers = {**edge.as_customer(), "User-Agent": "bankmesh-ios/1.0"}
    await edge.client.post("/v1/payments", json=body, headers=headers)
    request = edge.upstream.last.request
    assert isinstance(request, payments.CreatePaymentRequest)
    assert request.client_context.ip_address == "127.0.0.1"
    assert request.client_context.user_agent == "bankmesh-ios/1.0"
    assert request.client_context.device_id == "phone-1"
    assert edge.upstream.last.metadata["x-bankmesh-client-ip"] == "127.0.0.1"


async def test_the_request_id_is_echoed_and_sent_to_the_services(edge: Edge) -> None:
    """A well-formed X-Request-Id comes back and rides the gRPC call; a hostile one is replaced."""
    headers = {**edge.as_customer(), "X-Request-Id": "req-123"}
    response = await edge.client.get("/v1/accounts", headers=headers)
    assert response.headers["x-request-id"] == "req-123"
    assert edge.upstream.last.request_id == "req-123"
    response = await edge.client.get("/v1/accounts", headers={**headers, "X-Request-Id": "a\tb"})
    assert response.headers["x-request-id"] != "a\tb"
    assert len(response.headers["x-request-id"]) == 32
    assert (await edge.client.get("/v1/nope")).headers["x-request-id"]


async def test_the_timeout_header_becomes_the_grpc_deadline_capped(edge: Edge) -> None:
    """X-Request-Timeout: 2.5 is a 2.5 s deadline; 999 is capped at 30; default is 10."""
    headers = edge.as_customer()
    await edge.client.get("/v1/accounts", headers={**headers, "X-Request-Timeout": "2.5"})
    assert edge.upstream.last.deadline_seconds == 2.5
    assert edge.upstream.last.remaining is not None and 2.0 < edge.upstream.last.remaining <= 2.5
    await edge.client.get("/v1/accounts", headers={**headers, "X-Request-Timeout": "999"})
    assert edge.upstream.last.deadline_seconds == 30.0
    await edge.client.get("/v1/accounts", headers=headers)
    assert edge.upstream.last.deadline_seconds == 10.0
    for bad in ("soon", "-1", "0", "nan", "inf"):
        response = await edge.client.get(
            "/v1/accounts", headers={**headers, "X-Request-Timeout": bad}
        )
        assert response.status_code == 400, bad


# --- limits and shape -------------------------------------------------------------------


async def test_login_is_rate_limited_per_ip_with_retry_after() -> None:
    """Past the limit: 429, Retry-After, RESOURCE_EXHAUSTED / RATE_LIMITED."""
    rules = {"/bankmesh.identity.v1.IdentityService/Login": Rule("login", "ip", Limit(2, 60))}
    edge, _ = await make_edge(EdgeSettings(rate_rules=rules))
    async with edge.client:
        for _ in range(2):
            assert (await edge.client.post("/v1/auth/login", json={})).status_code == 200
        response = await edge.client.post("/v1/auth/login", json={})
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 30
    assert response.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert reason(response) == "RATE_LIMITED"


async def test_payment_creation_is_rate_limited_per_user() -> None:
    """One user's flood does not use up another user's allowance."""
    rules = {
        "/bankmesh.payment.v1.PaymentService/CreatePayment": Rule(
            "create-payment", "user", Limit(1, 60)
        )
    }
    edge, _ = await make_edge(EdgeSettings(rate_rules=rules))
    async with edge.client:
        alice, bob = edge.as_customer("alice"), edge.as_customer("bob")
        assert (
            await edge.client.post("/v1/payments", json=PAYMENT, headers=alice)
        ).status_code == 200
        assert (
            await edge.client.post("/v1/payments", json=PAYMENT, headers=alice)
        ).status_code == 429
        assert (
            await edge.client.post("/v1/payments", json=PAYMENT, headers=bob)
        ).status_code == 200


async def test_an_unknown_route_is_404_and_a_wrong_method_405_with_allow(edge: Edge) -> None:
    """Both answer in the Status format; 405 lists the methods that exist."""
    missing = await edge.client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert reason(missing) == "ROUTE_NOT_FOUND"
    wrong = await edge.client.put("/v1/accounts")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "POST"}
    assert reason(wrong) == "METHOD_NOT_ALLOWED"


async def test_a_body_over_the_limit_is_413(edge: Edge) -> None:
    """64 KiB and more are refused, whether announced by Content-Length or streamed."""
    huge = b'{"reference": "' + b"x" * 70_000 + b'"}'
    headers = {**edge.as_customer(), "Content-Type": "application/json"}
    response = await edge.client.post("/v1/payments", content=huge, headers=headers)
    assert response.status_code == 413
    assert reason(response) == "PAYLOAD_TOO_LARGE"

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 4096

    streamed = await edge.client.post("/v1/payments", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert edge.upstream.calls == []


async def test_malformed_json_unknown_fields_and_wrong_types_are_400(edge: Edge) -> None:
    """Each names the field in ErrorInfo.metadata when there is one."""
    headers = {**edge.as_customer(), "Content-Type": "application/json"}
    cases = [
        (b"{", ""),
        (b'{"amount": {"minorUnits": "ten"}}', "amount.minorUnits"),
        (b'{"status": "PAYMENT_STATUS_COMPLETED"}', "status"),
    ]
    for body, field in cases:
        response = await edge.client.post("/v1/payments", content=body, headers=headers)
        assert response.status_code == 400, body
        assert reason(response) == "INVALID_ARGUMENT"
        assert response.json()["details"][0].get("metadata", {}).get("field", "") == field
    form = await edge.client.post(
        "/v1/payments", content=b"a=b", headers={**headers, "Content-Type": "text/plain"}
    )
    assert form.status_code == 400


async def test_a_service_refusal_arrives_as_its_status(edge: Edge) -> None:
    """ACCOUNT_NOT_FOUND from the service is a 404 with the same reason and metadata."""

    def refuse(route: Any, request: Any) -> Any:
        raise UpstreamError(
            WireError(
                grpc.StatusCode.NOT_FOUND,
                "ACCOUNT_NOT_FOUND",
                "no such account",
                {"account_id": "x"},
            ).to_status()
        )

    edge.upstream.answer = refuse
    response = await edge.client.get("/v1/accounts/x", headers=edge.as_customer())
    assert response.status_code == 404
    assert response.json()["details"][0]["metadata"] == {"account_id": "x"}
    assert reason(response) == "ACCOUNT_NOT_FOUND"


async def test_an_unexpected_failure_is_500_with_an_incident_and_no_internals(edge: Edge) -> None:
    """A bug in the edge answers INTERNAL with an incident id, never a traceback."""

    def explode(route: Any, request: Any) -> Any:
        raise RuntimeError("secret internals")

    edge.upstream.answer = explode
    response = await edge.client.get("/v1/accounts", headers=edge.as_customer())
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json()["details"][0]["metadata"]["incident"]


# --- CORS, health, readiness, OpenAPI ---------------------------------------------------


async def test_cors_is_off_by_default(edge: Edge) -> None:
    """No allowed origins: no Access-Control headers, preflights get no blessing."""
    response = await edge.client.options(
        "/v1/accounts",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_only_the_configured_origins() -> None:
    """A listed origin's preflight is answered; another origin gets nothing."""
    edge, _ = await make_edge(EdgeSettings(cors_origins=("https://app.example",)))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with edge.client:
        ok = await edge.client.options(
            "/v1/payments", headers={"Origin": "https://app.example", **preflight}
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = await edge.client.options(
            "/v1/payments", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        simple = await edge.client.get(
            "/v1/accounts", headers={"Origin": "https://app.example", **edge.as_customer()}
        )
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Request-Id" in simple.headers["access-control-expose-headers"]


async def test_healthz_answers_while_the_process_runs(edge: Edge) -> None:
    """/healthz needs nothing behind it."""
    edge.health["account"] = "NOT_SERVING"
    response = await edge.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_naming_the_service_that_is_down(edge: Edge) -> None:
    """Ready only when every upstream is SERVING; otherwise the Status says which is not."""
    ready = await edge.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["account"] == "SERVING"
    edge.health["payment"] = "UNREACHABLE (UNAVAILABLE)"
    down = await edge.client.get("/readyz")
    assert down.status_code == 503
    assert reason(down) == "DEPENDENCY_UNAVAILABLE"
    assert down.json()["details"][0]["metadata"]["payment"] == "UNREACHABLE (UNAVAILABLE)"
    assert "payment" in down.json()["message"]


async def test_the_openapi_document_is_served(edge: Edge) -> None:
    """/openapi.json is OpenAPI 3.1 listing the routes by operationId."""
    document = (await edge.client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert (
        document["paths"]["/v1/accounts/{account_id}:freeze"]["post"]["operationId"]
        == "FreezeAccount"
    )


async def test_readyz_is_503_while_no_token_keys_are_loaded() -> None:
    """Before identity's keys arrive, no token can be checked, so the edge is not ready."""
    edge, _ = await make_edge(empty_keys=True)
    async with edge.client:
        response = await edge.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["details"][0]["metadata"]["jwks"] == "EMPTY"
