"""Publishing ended sessions to Redis, where resource servers look them up.

The contract with the edge (mesh.tokens): for every ended session, the key
``bankmesh:identity:revoked-sid:<sid>`` exists for at least as long as an
access token of that session could still be valid (its lifetime plus clock
skew); `mesh.tokens.session_revoked` asks for it. After that the tokens have
expired on their own and the key may go.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mesh.tokens import REVOKED_SID_TTL_SECONDS, revoked_sid_key
from services.identity.service_layer.ports import DependencyUnavailable


def create_redis(url: str) -> redis.asyncio.Redis:
    """A client that fails fast: a logout waiting on a dead Redis helps nobody."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
        max_connections=32,
    )


class RedisSessionRevocations:
    def __init__(
        self, client: redis.asyncio.Redis, ttl_seconds: int = REVOKED_SID_TTL_SECONDS
    ) -> None:
        if ttl_seconds < REVOKED_SID_TTL_SECONDS:
            raise ValueError(
                f"a revoked session must be remembered for at least {REVOKED_SID_TTL_SECONDS} s"
            )
        self._client = client
        self._ttl = ttl_seconds

    async def revoke(self, session_ids: Sequence[uuid.UUID]) -> None:
        if not session_ids:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.set(revoked_sid_key(str(session_id)), "1", ex=self._ttl)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise DependencyUnavailable(
                "Redis",
                "the revocation list is unreachable; the session ended, retry to publish it",
            ) from exc

    async def ping(self) -> bool:
        try:
            pong: Any = self._client.ping()  # typed as sync-or-async; this client is async
            return bool(await pong)
        except (redis.exceptions.RedisError, OSError):
            return False
