"""Maps exceptions raised by servicers to google.rpc.Status, in one place.

Servicers stay thin: they raise the domain's exceptions and never build a
Status themselves. An exception the service's translator knows becomes its
`WireError`; any other becomes INTERNAL with an incident id that the log line
also carries, so an operator can find the stack trace a client never sees.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from mesh.errors import ErrorTranslator, WireError

from .base import Call, ServerInterceptor, abort

log = logging.getLogger("bankmesh.errors")


class ErrorMappingInterceptor(ServerInterceptor):
    def __init__(self, translate: ErrorTranslator) -> None:
        self._translate = translate

    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await proceed()
        except grpc.aio.AbortError:
            raise  # already a deliberate status
        except Exception as exc:
            await abort(call, self._translate(exc) or _internal(call.method, exc))


def _internal(method: str, exc: Exception) -> WireError:
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (incident %s)", method, incident, exc_info=exc)
    return WireError(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error; quote incident {incident} to the operator",
        {"incident": incident},
    )
