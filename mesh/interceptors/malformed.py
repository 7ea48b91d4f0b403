"""Malformed request bytes become INVALID_ARGUMENT, not INTERNAL.

grpc deserializes a request before any handler runs, and a decoding failure
(garbage bytes, a message nested past protobuf's recursion limit) surfaces
as INTERNAL "Exception deserializing request!", which reads like our bug.
This interceptor swaps in a deserializer that returns a marker instead of
raising; the call then passes the outer interceptors (so it is logged,
traced, authenticated and authorized like any other) and is refused here
with INVALID_ARGUMENT / MALFORMED_REQUEST before the servicer sees it.
Oversized messages never get this far: the server's receive limit refuses
them with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from mesh.errors import WireError

from .base import Call, Deserializer, ServerInterceptor, abort


class _Malformed:
    """Stands in for a request that could not be decoded."""


class MalformedRequestInterceptor(ServerInterceptor):
    def request_deserializer(self, decode: Deserializer) -> Deserializer:
        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except (DecodeError, RecursionError, ValueError):
                return _Malformed()

        return tolerant

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        if isinstance(call.request, _Malformed):
            await abort(
                call,
                WireError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "MALFORMED_REQUEST",
                    f"the request body is not a valid {call.method_name}Request message",
                ),
            )
        return await proceed()
