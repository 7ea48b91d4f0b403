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
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from mesh.errors import WireError

from .base import Call, Context, _MethodHandler, abort

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class _Malformed:
    """Stands in for a request that could not be decoded."""


class MalformedRequestInterceptor(_ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _MethodHandler:
        found: _MethodHandler | None = await continuation(handler_call_details)
        if found is None or found.unary_unary is None or found.request_deserializer is None:
            return found  # type: ignore[return-value] # unknown or streaming: left alone
        handler = found
        decode: Callable[[bytes], Any] = found.request_deserializer
        inner: Any = handler.unary_unary
        method = handler_call_details.method

        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except (DecodeError, RecursionError, ValueError):
                return _Malformed()

        async def checked(request: Any, context: Context) -> Any:
            if isinstance(request, _Malformed):
                name = method.rsplit("/", 1)[-1]
                await abort(
                    Call(method, context),
                    WireError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "MALFORMED_REQUEST",
                        f"the request body is not a valid {name}Request message",
                    ),
                )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=tolerant,
            response_serializer=handler.response_serializer,
        )
