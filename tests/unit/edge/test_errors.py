"""gRPC status -> HTTP, and the one error body: google.rpc.Status as JSON."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from mesh.edge.errors import HTTP_STATUS, EdgeError, reply_for
from mesh.errors import WireError

# google/rpc/code.proto, code by code.
TABLE = [
    (grpc.StatusCode.OK, 200),
    (grpc.StatusCode.CANCELLED, 499),
    (grpc.StatusCode.UNKNOWN, 500),
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.ALREADY_EXISTS, 409),
    (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.UNAUTHENTICATED, 401),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.FAILED_PRECONDITION, 400),
    (grpc.StatusCode.ABORTED, 409),
    (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.INTERNAL, 500),
    (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DATA_LOSS, 500),
]


def test_the_table_covers_every_grpc_code() -> None:
    """No code is left to a default."""
    assert {code for code, _ in TABLE} == set(grpc.StatusCode)
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


@pytest.mark.parametrize(
    ("code", "http_status"), [row for row in TABLE if row[0] is not grpc.StatusCode.OK]
)
def test_each_grpc_code_maps_to_its_http_status(code: grpc.StatusCode, http_status: int) -> None:
    """The HTTP status is google/rpc/code.proto's, and the body keeps the gRPC code and reason."""
    reply = reply_for(WireError(code, "SOME_REASON", "words", {"field": "x"}).to_status())
    assert reply.http_status == http_status
    assert reply.body["code"] == code.value[0]
    assert reply.body["message"] == "words"
    assert reply.body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "SOME_REASON",
            "domain": "bankmesh.io",
            "metadata": {"field": "x"},
        }
    ]
    assert ("WWW-Authenticate" in reply.headers) == (code is grpc.StatusCode.UNAUTHENTICATED)
    assert ("Retry-After" in reply.headers) == (code is grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_unauthenticated_says_bearer_with_the_token_error() -> None:
    """401 for a bad token carries RFC 6750's invalid_token."""
    reply = reply_for(
        WireError(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", 'it "expired"').to_status()
    )
    assert reply.headers["WWW-Authenticate"] == (
        'Bearer realm="bankmesh", error="invalid_token", error_description="it \'expired\'"'
    )


def test_a_status_without_error_info_gets_one_named_after_its_code() -> None:
    """Clients can always read details[0].reason; UNAVAILABLE reads DEPENDENCY_UNAVAILABLE."""
    reply = reply_for(status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="down"))
    assert reply.body["details"][0]["reason"] == "DEPENDENCY_UNAVAILABLE"
    reply = reply_for(status_pb2.Status(code=grpc.StatusCode.DEADLINE_EXCEEDED.value[0]))
    assert reply.body["details"][0]["reason"] == "DEADLINE_EXCEEDED"


def test_retry_after_comes_from_retry_info_rounded_up() -> None:
    """A service's RetryInfo of 2.2 s becomes Retry-After: 3."""
    status = WireError(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "slow down").to_status()
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=200_000_000))
    )
    status.details.append(detail)
    assert reply_for(status).headers["Retry-After"] == "3"


def test_an_unknown_detail_type_is_left_out_rather_than_failing() -> None:
    """A detail the edge cannot name does not turn an answer into a 500."""
    status = WireError(grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "no").to_status()
    status.details.add(type_url="type.googleapis.com/some.Unknown", value=b"\x08\x01")
    assert [d["reason"] for d in reply_for(status).body["details"]] == ["ACCOUNT_NOT_FOUND"]


def test_an_edge_error_may_use_a_more_precise_http_status() -> None:
    """405 and 413 keep their gRPC code in the body."""
    reply = EdgeError(
        grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_ALLOWED", "no", http_status=405
    ).reply()
    assert (reply.http_status, reply.body["code"]) == (405, 12)
