"""An edge app on httpx's ASGITransport: real routing, auth and binding; fake services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message

from mesh import context
from mesh.context import EndUser
from mesh.edge.app import build_edge_app
from mesh.edge.auth import AccessTokenVerifier, Authenticator, KeyRing, SessionUnknown
from mesh.edge.ratelimit import RateLimiter
from mesh.edge.routes import Route
from mesh.edge.settings import EdgeSettings
from mesh.edge.transcode import message_class
from mesh.interceptors.deadline import remaining
from tests.unit.edge.signing import TokenIssuer


@dataclass
class Seen:
    route: Route
    request: Message
    deadline_seconds: float
    metadata: dict[str, str]
    end_user: EndUser | None
    request_id: str
    remaining: float | None


@dataclass
class FakeUpstream:
    """Records what the edge would send to the services; answers empty messages."""

    calls: list[Seen] = field(default_factory=list)
    answer: Callable[[Route, Message], Message] | None = None

    async def __call__(
        self,
        route: Route,
        request: Message,
        *,
        deadline_seconds: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Message:
        self.calls.append(
            Seen(
                route,
                request,
                deadline_seconds,
                dict(metadata),
                context.end_user.get(),
                context.request_id.get(),
                remaining(),
            )
        )
        if self.answer is not None:
            return self.answer(route, request)
        return message_class(route.output)()

    @property
    def last(self) -> Seen:
        return self.calls[-1]


@dataclass
class Sessions:
    """Revoked session ids; `down` makes the store unreachable."""

    revoked: set[str] = field(default_factory=set)
    down: bool = False

    async def __call__(self, session_id: str) -> bool:
        if self.down:
            raise SessionUnknown
        return session_id in self.revoked


@dataclass
class Edge:
    client: httpx.AsyncClient
    upstream: FakeUpstream
    issuer: TokenIssuer
    sessions: Sessions
    health: dict[str, str]

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def as_customer(self, customer_id: str = "c-1") -> dict[str, str]:
        return self.bearer(self.issuer.customer(customer_id))


async def make_edge(
    settings: EdgeSettings | None = None, *, empty_keys: bool = False
) -> tuple[Edge, Any]:
    issuer = TokenIssuer()
    keys = KeyRing(issuer.jwks)
    if not empty_keys:
        await keys.refresh()
    upstream = FakeUpstream()
    sessions = Sessions()
    health = {"account": "SERVING", "payment": "SERVING", "identity": "SERVING"}

    async def probe(name: str) -> str:
        return health[name]

    app = build_edge_app(
        upstream=upstream,
        authenticator=Authenticator(keys, AccessTokenVerifier(), sessions),
        limiter=RateLimiter(None),
        settings=settings,
        health=probe,
        keys=keys,
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://edge.test")
    return Edge(client, upstream, issuer, sessions, health), app


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    built, _ = await make_edge()
    async with built.client:
        yield built
