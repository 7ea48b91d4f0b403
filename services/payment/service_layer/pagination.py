"""Opaque page tokens, as the account service issues them.

A token is the position after which the next page starts, bound to the list
it came from (a token of account A's payments cannot page account B's), in
URL-safe base64 so it survives query strings. Tokens are not secrets: access
is checked again on every page; a malformed one is INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from services.payment.domain.errors import InvalidRequest, Reason

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidRequest("page_size must not be negative", field="page.page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(scope: str, created_at: datetime, payment_id: uuid.UUID) -> str:
    position = [created_at.isoformat(), str(payment_id)]
    raw = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(scope: str, token: str) -> tuple[datetime, uuid.UUID] | None:
    """The position in `token`; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data: Any = json.loads(raw)
        if data["s"] != scope:
            raise ValueError("token of another list")
        created_at, payment_id = data["p"]
        if not isinstance(created_at, str) or not isinstance(payment_id, str):
            raise TypeError("positions are strings")
        position = datetime.fromisoformat(created_at)
        if position.tzinfo is None:
            raise ValueError("positions are aware timestamps")
        return position, uuid.UUID(payment_id)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InvalidRequest(
            "page_token is not one this list returned; start again without it",
            reason=Reason.INVALID_PAGE_TOKEN,
            field="page.page_token",
        ) from exc
