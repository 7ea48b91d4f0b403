"""The shape every bankmesh server interceptor shares.

grpc.aio interceptors see a handler, not a call; this base turns that into two
hooks a concern can implement:

* `admit(call)`: runs before every RPC of any kind (unary or streaming) and
  may abort. Authentication and authorization use it, so streaming methods such
  as Health/Watch are not a way around the policy.
* `around(call, proceed)`: wraps unary-unary calls, the only kind our services
  define, for concerns that need the outcome (logs, tracing, error mapping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from grpc_status import rpc_status

from mesh import context
from mesh.errors import WireError

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_MethodHandler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


@dataclass(frozen=True, slots=True)
class Call:
    method: str  # "/package.Service/Method"
    context: Context

    @property
    def service(self) -> str:
        return self.method.rsplit("/", 2)[1]

    @property
    def method_name(self) -> str:
        return self.method.rsplit("/", 1)[1]

    def metadata(self, key: str) -> str | None:
        for item_key, value in self.context.invocation_metadata() or ():
            if item_key == key:
                return value.decode() if isinstance(value, bytes) else str(value)
        return None


class ServerInterceptor(_ServerInterceptor):
    async def admit(self, call: Call) -> None:
        """Refuse the call by aborting `call.context`; return to let it through."""

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        return await proceed()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _MethodHandler:
        found: _MethodHandler | None = await continuation(handler_call_details)
        if found is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return found  # type: ignore[return-value]
        handler = found
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return self._wrap_unary(method, handler)
        return self._wrap_streaming(method, handler)

    def _wrap_unary(self, method: str, handler: _MethodHandler) -> _MethodHandler:
        inner: Any = handler.unary_unary

        async def unary(request: Any, context: Context) -> Any:
            call = Call(method, context)
            await self.admit(call)
            return await self.around(call, lambda: inner(request, context))

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_streaming(self, method: str, handler: _MethodHandler) -> _MethodHandler:
        if handler.unary_stream is not None:
            unary_stream: Any = handler.unary_stream

            async def us(request: Any, context: Context) -> AsyncIterator[Any]:
                await self.admit(Call(method, context))
                async for item in unary_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                us,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            stream_stream: Any = handler.stream_stream

            async def ss(requests: Any, context: Context) -> AsyncIterator[Any]:
                await self.admit(Call(method, context))
                async for item in stream_stream(requests, context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                ss,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # stream-unary: no bankmesh method has that shape


async def abort(call: Call, error: WireError, *, trailers: Sequence[tuple[str, str]] = ()) -> None:
    """End the call with `error` as a google.rpc.Status (raises grpc.aio.AbortError).

    Aborting replaces the trailing metadata, so the request id is added back,
    with any `trailers` the caller should see (e.g. retry-after).
    """
    status = rpc_status.to_status(error.to_status())
    extra = list(trailers)
    request_id = context.request_id.get()
    if request_id:
        extra.append(("x-request-id", request_id))
    if extra:
        status = _Status(status.code, status.details, (*status.trailing_metadata, *extra))
    await call.context.abort_with_status(status)  # type: ignore[attr-defined] # not in stubs


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
