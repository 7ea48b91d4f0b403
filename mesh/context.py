"""Per-RPC facts, set by the server interceptors and read anywhere below them.

A ContextVar per fact (grpc's async interceptor example does the same): the
servicer and the use cases it calls run in the RPC's task, so they see the
values for their own call and no other.

* `request_id`: the caller's x-request-id, or a fresh one; sent on every
  outbound call and written in every log line.
* `peer_service`: the calling service's SPIFFE id, from its mTLS certificate.
* `end_user`: the person on whose behalf the call is made, from the signed
  end-user assertion the edge (or an upstream service) attached. None for
  service-to-service work nobody asked for in person (recovery loops).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EndUser:
    user_id: str
    # Set for customers; staff users have none.
    customer_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_customer(self) -> bool:
        return "customer" in self.roles and not (self.roles & STAFF_ROLES)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


STAFF_ROLES = frozenset({"support", "auditor", "admin", "reviewer"})

request_id: ContextVar[str] = ContextVar("request_id", default="")
peer_service: ContextVar[str] = ContextVar("peer_service", default="")
end_user: ContextVar[EndUser | None] = ContextVar("end_user", default=None)
