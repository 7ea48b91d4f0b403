"""Request ids: take the caller's x-request-id (or mint one) and echo it back.

The id then rides every outbound call (see `outbound.py`) and every log line,
so one customer action can be followed across all the services it touched.

It is echoed in the *trailing* metadata, never as early response headers:
once a client has received headers, gRPC may no longer retry the call, and
our retry policy (UNAVAILABLE) depends on that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mesh import context

from .base import Call, ServerInterceptor

HEADER = "x-request-id"
# Accept what proxies and clients commonly send; anything else is replaced,
# so a hostile id cannot forge log lines.
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdInterceptor(ServerInterceptor):
    async def around(self, call: Call, proceed: Callable[[], Awaitable[Any]]) -> Any:
        incoming = call.metadata(HEADER)
        request_id = incoming if incoming and _VALID.match(incoming) else uuid.uuid4().hex
        token = context.request_id.set(request_id)
        try:
            call.context.set_trailing_metadata(((HEADER, request_id),))
            return await proceed()
        finally:
            context.request_id.reset(token)
