"""Opaque page tokens.

A token is the position after which the next page starts, bound to the list
it came from (a token of account A's statement cannot page account B's), in
URL-safe base64 so it survives query strings. Tokens are not secrets: the
server still checks access on every page; a malformed one is INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from services.account.domain.errors import InvalidRequest, Reason

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidRequest("page_size must not be negative", field="page.page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(scope: str, position: list[Any]) -> str:
    raw = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


T = TypeVar("T")


def decode(scope: str, token: str, parse: Callable[[list[Any]], T]) -> T | None:
    """The position in `token` as `parse` reads it; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position = data["p"]
        if data["s"] != scope or not isinstance(position, list):
            raise ValueError("token of another list")
        return parse(position)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InvalidRequest(
            "page_token is not one this list returned; start again without it",
            reason=Reason.INVALID_PAGE_TOKEN,
            field="page.page_token",
        ) from exc
