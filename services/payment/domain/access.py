"""Who is calling, and what they may do with whose payments.

The entrypoint turns the per-RPC facts (the end user the edge vouched for,
or else the calling service) into a `Caller`; the use cases ask it the
questions below. Object-level rules (does this customer own that account?)
need the ledger, so the use cases answer those; this module only says which
rule applies.

| kind      | who                                   | may                                           |
|-----------|---------------------------------------|-----------------------------------------------|
| SERVICE   | no end user: a trusted service or the | everything; the mesh policy decides which     |
|           | operator (policy is enforced there)   | services reach us at all                      |
| CUSTOMER  | an end user with the customer role    | pay from own accounts; see payments touching  |
|           |                                       | own accounts; refund payments paid to them    |
| STAFF     | an end user with a staff role         | read: support, auditor, reviewer, admin;      |
|           |                                       | approve/reject: reviewer, admin;              |
|           |                                       | refund: support, admin; create: admin         |
| NOBODY    | an end user with neither              | nothing (default deny)                        |

Idempotency keys are scoped per caller: the end user's id when there is one,
else the calling service. Two customers choosing the same key never meet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import PermissionDenied


class CallerKind(enum.StrEnum):
    SERVICE = "SERVICE"
    CUSTOMER = "CUSTOMER"
    STAFF = "STAFF"
    NOBODY = "NOBODY"


READ_ROLES = frozenset({"support", "auditor", "reviewer", "admin"})
REVIEW_ROLES = frozenset({"reviewer", "admin"})
REFUND_ROLES = frozenset({"support", "admin"})
CREATE_ROLES = frozenset({"admin"})

# Who changed a payment when no caller did: the service itself, and its recovery loop.
SYSTEM_ACTOR = "payment"
RECOVERY_ACTOR = "payment-recovery"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    # The idempotency scope: "user:<id>" or "service:<spiffe id or 'anonymous'>".
    scope: str
    # Written into the history as who did it.
    actor: str
    customer_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def service(cls, name: str) -> Caller:
        name = name or "anonymous"
        return cls(CallerKind.SERVICE, f"service:{name}", name)

    @classmethod
    def end_user(
        cls, user_id: str, *, customer_id: str, roles: frozenset[str], is_customer: bool
    ) -> Caller:
        if is_customer and customer_id:
            kind = CallerKind.CUSTOMER
        elif roles & READ_ROLES:
            kind = CallerKind.STAFF
        else:
            kind = CallerKind.NOBODY
        return cls(kind, f"user:{user_id}", user_id, customer_id, roles)

    @property
    def is_customer(self) -> bool:
        return self.kind is CallerKind.CUSTOMER

    def _require(self, roles: frozenset[str], what: str) -> None:
        if self.kind is CallerKind.SERVICE:
            return
        if self.kind is CallerKind.STAFF and self.roles & roles:
            return
        raise PermissionDenied(f"{what} needs one of the roles {', '.join(sorted(roles))}")

    def require_create(self) -> None:
        if self.kind is CallerKind.CUSTOMER:
            return  # and only from their own accounts; the use case checks that
        self._require(CREATE_ROLES, "creating a payment for someone else")

    def require_read(self) -> None:
        if self.kind is CallerKind.CUSTOMER:
            return  # their own payments only; the use case checks that
        self._require(READ_ROLES, "reading payments")

    def require_review(self) -> None:
        self._require(REVIEW_ROLES, "approving or rejecting a payment")

    def require_refund(self) -> None:
        if self.kind is CallerKind.CUSTOMER:
            return  # only payments made to them; the use case checks that
        self._require(REFUND_ROLES, "refunding a payment")
