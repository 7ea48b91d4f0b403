"""Business errors on the wire: google.rpc.Status with an ErrorInfo detail.

Every refusal bankmesh sends carries `ErrorInfo(reason=..., domain="bankmesh.io",
metadata=...)`, the reason being an `ErrorReason` name (common/v1/errors.proto).
gRPC clients read it from the `grpc-status-details-bin` trailer
(`grpc_status.rpc_status.from_call`); the edge copies the same Status into its
JSON bodies, so one reason string means one thing everywhere.

A service raises whatever its domain raises; at the boundary the error-mapping
interceptor asks the service's translator for a `WireError` and aborts the
call with it. Anything the translator does not recognise becomes INTERNAL with
a request id and no internals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "bankmesh.io"


@dataclass(frozen=True, slots=True)
class WireError:
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_status(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=dict(self.metadata)
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])


# A service's translator: its own exceptions -> WireError, None for "not mine".
ErrorTranslator = Callable[[Exception], WireError | None]


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a Status, if it has one."""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None
