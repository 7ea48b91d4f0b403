"""Who is asking, read from the RPC being served (see mesh.context)."""

from __future__ import annotations

from mesh import context

from .events import SYSTEM, Origin


def current_origin() -> Origin:
    """The person or service behind the current RPC; `system` outside one."""
    user = context.end_user.get()
    peer = context.peer_service.get()
    request = context.request_id.get()
    if user is not None:
        return Origin(actor=f"user:{user.user_id}", source=request, via=peer)
    return Origin(actor=peer or SYSTEM, source=request)
