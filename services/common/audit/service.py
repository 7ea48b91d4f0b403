"""A service process's audit machinery, wired the same way in every service's app.

* calls the mesh refused for it (UNAUTHENTICATED, PERMISSION_DENIED) go to
  its audit log as `rpc.unauthenticated` and `rpc.denied` events: `secure()`
  gives the server's security this log as its refusal sink (mesh.refusals),
  and an `AuditWriter` writes them in the background;
* when the launcher gave it a signing key and a checkpoint file
  (BANKMESH_AUDIT_KEY, BANKMESH_AUDIT_CHECKPOINTS), the head of its chain is
  signed every BANKMESH_AUDIT_CHECKPOINT_SECONDS (60) when it moved, and
  once more at shutdown.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mesh import context
from mesh.refusals import Refusal
from mesh.server import ServerSecurity

from .checkpoints import DEFAULT_INTERVAL_SECONDS, Checkpointer
from .events import AuditEvent, Outcome
from .origin import current_origin
from .store import AuditWriter

KEY_VARIABLE = "BANKMESH_AUDIT_KEY"
CHECKPOINTS_VARIABLE = "BANKMESH_AUDIT_CHECKPOINTS"
INTERVAL_VARIABLE = "BANKMESH_AUDIT_CHECKPOINT_SECONDS"


class ServiceAudit:
    def __init__(
        self, engine: AsyncEngine, service: str, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.writer = AuditWriter(engine, service)
        key, checkpoints = environ.get(KEY_VARIABLE), environ.get(CHECKPOINTS_VARIABLE)
        self.checkpointer = (
            Checkpointer(
                engine,
                service,
                Path(key),
                Path(checkpoints),
                float(environ.get(INTERVAL_VARIABLE) or DEFAULT_INTERVAL_SECONDS),
            )
            if key and checkpoints
            else None
        )
        self.refusals = RefusalsToAudit(self.writer)

    def secure(self, security: ServerSecurity | None) -> ServerSecurity | None:
        """`security` with this log as the sink of the calls the mesh refuses."""
        return None if security is None else replace(security, refusals=self.refusals)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.checkpointer.run()] if self.checkpointer is not None else []

    async def close(self) -> None:
        """Write what is queued, then sign the final head (before the engine goes)."""
        await self.writer.close()
        if self.checkpointer is not None:
            await self.checkpointer.quietly()


_ACTIONS = {"PERMISSION_DENIED": "rpc.denied", "UNAUTHENTICATED": "rpc.unauthenticated"}


class RefusalsToAudit:
    """A `mesh.refusals.RefusalSink` that queues each refusal as an audit event."""

    def __init__(self, writer: AuditWriter) -> None:
        self._writer = writer

    def submit(self, refusal: Refusal) -> None:
        caller = context.peer_service.get()
        origin = current_origin()
        if not caller and context.end_user.get() is None:
            # Not even the calling service is known: its certificate was refused.
            origin = replace(origin, actor="unauthenticated")
        self._writer.submit(
            AuditEvent.by(
                origin,
                _ACTIONS.get(refusal.code, "rpc.refused"),
                Outcome.DENIED,
                refusal.at,
                refusal.method,
                {"reason": refusal.reason, "caller": caller or "unknown"},
            )
        )
