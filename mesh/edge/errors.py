"""Every error the edge answers: a google.rpc.Status as JSON, with the HTTP status of its code.

The body is the same Status a gRPC client reads from `grpc-status-details-bin`:

    {"code": 5, "message": "account not found",
     "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                  "reason": "ACCOUNT_NOT_FOUND", "domain": "bankmesh.io",
                  "metadata": {"field": "account_id"}}]}

so a mobile client branches on `details[].reason` exactly as a gRPC client
does. The HTTP status comes from the gRPC code, as google/rpc/code.proto
maps them (`HTTP_STATUS`); 401 carries `WWW-Authenticate: Bearer` (RFC 6750)
and 429 carries `Retry-After`.

Errors the edge raises itself (`EdgeError`) use the same shape: routing
(ROUTE_NOT_FOUND, METHOD_NOT_ALLOWED), request shape (INVALID_ARGUMENT with
`metadata.field`, PAYLOAD_TOO_LARGE), tokens (TOKEN_INVALID, TOKEN_EXPIRED),
RATE_LIMITED and DEPENDENCY_UNAVAILABLE. A service error that arrives without
an ErrorInfo gets one whose reason is the code's name, so `details[0].reason`
is always there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh.errors import ERROR_DOMAIN, WireError, error_info

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# When a service sends no RetryInfo with RESOURCE_EXHAUSTED.
DEFAULT_RETRY_AFTER_SECONDS = 1
REALM = "bankmesh"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error as HTTP: status, extra headers and the Status JSON body."""

    http_status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class EdgeError(Exception):
    """A refusal decided at the edge, answered like a service's refusal.

    `http_status` overrides the code's mapping where HTTP has a more precise
    word than gRPC (405, 413); the code in the body stays the gRPC one.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.wire = WireError(code, reason, message, dict(metadata or {}))
        self.http_status = http_status
        self.headers = dict(headers or {})

    def reply(self) -> ErrorReply:
        built = reply_for(self.wire.to_status())
        headers = {**built.headers, **self.headers}
        return ErrorReply(self.http_status or built.http_status, built.body, headers)


def invalid_argument(field_name: str, message: str) -> EdgeError:
    metadata = {"field": field_name} if field_name else {}
    shown = f"{field_name}: {message}" if field_name else message
    return EdgeError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", shown, metadata)


def unauthenticated(reason: str, message: str) -> EdgeError:
    return EdgeError(
        grpc.StatusCode.UNAUTHENTICATED,
        reason,
        message,
        headers={"WWW-Authenticate": www_authenticate(reason, message)},
    )


def www_authenticate(reason: str = "", message: str = "") -> str:
    if not reason:
        return f'Bearer realm="{REALM}"'
    description = message.replace("\\", "").replace('"', "'")
    return f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'


def status_from_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a service sent, or one made from the code and details."""
    status: status_pb2.Status | None = None
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        status = None  # details that disagree with the code: trust the code
    if status is None:
        status = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return status


def reply_for(status: status_pb2.Status) -> ErrorReply:
    """The HTTP answer for a Status: its status code, headers and JSON body."""
    code = _BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    if error_info(status) is None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=_default_reason(code), domain=ERROR_DOMAIN))
        status = status_pb2.Status(
            code=status.code, message=status.message, details=[detail, *status.details]
        )
    headers: dict[str, str] = {}
    if code is grpc.StatusCode.UNAUTHENTICATED:
        info = error_info(status)
        reason = info.reason if info else ""
        headers["WWW-Authenticate"] = www_authenticate(
            reason if reason in ("TOKEN_INVALID", "TOKEN_EXPIRED") else "", status.message
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        headers["Retry-After"] = str(retry_after_seconds(status))
    return ErrorReply(HTTP_STATUS.get(code, 500), status_json(status), headers)


def _default_reason(code: grpc.StatusCode) -> str:
    if code is grpc.StatusCode.UNAVAILABLE:
        return "DEPENDENCY_UNAVAILABLE"
    return str(code.name)


def retry_after_seconds(status: status_pb2.Status) -> int:
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            return max(1, math.ceil(seconds))
    return DEFAULT_RETRY_AFTER_SECONDS


def status_json(status: status_pb2.Status) -> dict[str, Any]:
    """google.rpc.Status in its JSON form; details of types we cannot name are left out."""
    details: list[dict[str, Any]] = []
    for detail in status.details:
        try:
            details.append(json_format.MessageToDict(detail))
        except (json_format.SerializeToJsonError, TypeError, KeyError):
            continue
    return {"code": status.code, "message": status.message, "details": details}
