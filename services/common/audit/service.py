"""A service process's audit machinery, wired the same way in every service's app.

* refusals of the mesh policy go to its audit log (`AuditWriter`, installed
  as the authorization interceptor's sink);
* when the launcher gave it a signing key and a checkpoint file
  (BANKMESH_AUDIT_KEY, BANKMESH_AUDIT_CHECKPOINTS), the head of its chain is
  signed every BANKMESH_AUDIT_CHECKPOINT_SECONDS (60) when it moved, and
  once more at shutdown.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.interceptors.authz import record_denials_in

from .checkpoints import DEFAULT_INTERVAL_SECONDS, Checkpointer
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
        record_denials_in(self.writer)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self.checkpointer.run()] if self.checkpointer is not None else []

    async def close(self) -> None:
        """Write what is queued, then sign the final head (before the engine goes)."""
        record_denials_in(None)
        await self.writer.close()
        if self.checkpointer is not None:
            await self.checkpointer.quietly()
