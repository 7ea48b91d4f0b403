"""Authentication: who is calling (a service, by its certificate) and for whom (an end user).

* The calling service is the SPIFFE id in the client certificate of the mTLS
  handshake (`mesh.tls.peer_identity`), never a header or a request field.
* The end user, if any, is the signed assertion the caller attached
  (`mesh.assertions`), verified against that same certificate's key.

Either failing is UNAUTHENTICATED, before any servicer code runs, and is
handed to the server's refusal sink, if it has one (mesh.refusals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import grpc

from mesh import assertions, context
from mesh.errors import WireError
from mesh.refusals import Refusal, RefusalSink, record

from .base import Call, ServerInterceptor, abort

PeerReader = Callable[[Mapping[str, Iterable[bytes]]], str]

SPIFFE_PREFIX = "spiffe://bankmesh.local/svc/"


def service_name(spiffe_id: str) -> str:
    return spiffe_id.removeprefix(SPIFFE_PREFIX) if spiffe_id.startswith(SPIFFE_PREFIX) else ""


class AuthenticationInterceptor(ServerInterceptor):
    def __init__(
        self, own_spiffe_id: str, read_peer: PeerReader, refusals: RefusalSink | None = None
    ) -> None:
        self._own_id = own_spiffe_id
        self._read_peer = read_peer
        self._refusals = refusals

    async def admit(self, call: Call) -> None:
        auth = call.context.auth_context()
        try:
            peer_id = self._read_peer(auth)
        except ValueError as exc:
            await self._refuse(call, _unauthenticated(f"caller not authenticated: {exc}"))
            return
        context.peer_service.set(service_name(peer_id))
        token = call.metadata(assertions.HEADER)
        if not token:
            context.end_user.set(None)
            return
        try:
            user = assertions.verify(
                token,
                peer_certificate_pem=next(iter(auth["x509_pem_cert"])),
                issuer=peer_id,
                audience=self._own_id,
            )
        except (assertions.InvalidAssertion, KeyError, StopIteration) as exc:
            await self._refuse(call, _unauthenticated(str(exc), reason="TOKEN_INVALID"))
            return
        context.end_user.set(user)

    async def _refuse(self, call: Call, error: WireError) -> None:
        record(
            self._refusals,
            Refusal(call.method, "UNAUTHENTICATED", error.message, datetime.now(UTC)),
        )
        await abort(call, error)


def _unauthenticated(message: str, reason: str = "UNAUTHENTICATED_PEER") -> WireError:
    return WireError(grpc.StatusCode.UNAUTHENTICATED, reason, message)
