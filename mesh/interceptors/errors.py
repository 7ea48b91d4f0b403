"""Maps exceptions raised by servicers to google.rpc.Status, at one place.

Servicers stay thin: they raise the domain's exceptions and never build a
Status themselves. This interceptor wraps every unary handler; an exception
the service's translator knows becomes its `WireError`; any other becomes
INTERNAL with an incident id the log line also carries, so an operator can
find the stack trace a client never sees.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from grpc_status import rpc_status

from mesh.errors import ErrorTranslator, WireError

log = logging.getLogger("bankmesh.errors")

_Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# grpc-stubs makes these generic; at run time they are plain classes.
_MethodHandler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class ErrorMappingInterceptor(_ServerInterceptor):
    def __init__(self, translate: ErrorTranslator) -> None:
        self._translate = translate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _MethodHandler:
        handler = await continuation(handler_call_details)
        # Unknown methods come back as None; streaming handlers are left alone.
        if handler is None or handler.unary_unary is None:  # type: ignore[redundant-expr]
            return handler
        method = handler_call_details.method
        inner: _Handler = handler.unary_unary  # type: ignore[assignment] # aio handlers are async

        async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise  # already a deliberate status
            except Exception as exc:
                error = self._translate(exc)
                if error is None:
                    error = _internal(method, exc)
                await context.abort_with_status(  # type: ignore[attr-defined] # missing in stubs
                    rpc_status.to_status(error.to_status())
                )

        return grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _internal(method: str, exc: Exception) -> WireError:
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (incident %s)", method, incident, exc_info=exc)
    return WireError(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error; quote incident {incident} to the operator",
        {"incident": incident},
    )
