"""Who is calling, and what they may do with whose identity data.

The mesh policy (mesh/policy.toml) already decided that the caller may reach
the method at all; these rules decide about the object, and say no again
where the policy says no, so a mistake in one is not a hole.

| caller                      | CreateCustomer | GetCustomer          | Assign/RevokeRole |
|-----------------------------|----------------|----------------------|-------------------|
| edge, no end user           | self sign-up   | no                   | no                |
| operator, no end user       | yes            | any                  | yes               |
| customer                    | no             | their own only       | no                |
| support, admin              | yes            | any                  | admin only        |
| auditor                     | no             | any                  | no                |
| reviewer, or no known role  | no             | no                   | no                |

A customer asking for someone else's customer record is told it does not
exist (NotFound), exactly as for an id nobody has, so ids cannot be probed.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from .errors import NotFound, PermissionDenied
from .model import STAFF_ROLES, Role

OPERATOR = "operator"
EDGE = "edge"

_CREATE_ROLES = frozenset({Role.SUPPORT, Role.ADMIN})
_READ_ROLES = frozenset({Role.SUPPORT, Role.AUDITOR, Role.ADMIN})
_ROLE_ADMIN_ROLES = frozenset({Role.ADMIN})


class CallerKind(enum.StrEnum):
    SERVICE = "SERVICE"  # no end user: a service acting on its own
    CUSTOMER = "CUSTOMER"
    STAFF = "STAFF"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    # For the security events: the user id, or "service:<name>".
    actor: str
    service: str = ""
    user_id: str = ""
    customer_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_service(cls, name: str) -> Caller:
        return cls(CallerKind.SERVICE, f"service:{name or 'anonymous'}", service=name)

    @classmethod
    def for_end_user(
        cls, service: str, user_id: str, customer_id: str, roles: frozenset[str]
    ) -> Caller:
        kind = CallerKind.STAFF if roles & STAFF_ROLES else CallerKind.CUSTOMER
        return cls(kind, user_id, service, user_id, customer_id, roles)

    @property
    def is_operator(self) -> bool:
        return self.kind is CallerKind.SERVICE and self.service == OPERATOR

    def _staff_with(self, roles: frozenset[Role]) -> bool:
        return self.kind is CallerKind.STAFF and bool(self.roles & roles)

    def require_create_customer(self) -> None:
        """Self sign-up (a service without an end user), or support/admin."""
        if self.kind is CallerKind.SERVICE or self._staff_with(_CREATE_ROLES):
            return
        raise PermissionDenied("creating customers needs the support or admin role")

    def require_read_customer(self, customer_id: uuid.UUID) -> None:
        if self.is_operator or self._staff_with(_READ_ROLES):
            return
        if self.kind is CallerKind.CUSTOMER and self.customer_id == str(customer_id):
            return
        if self.kind is CallerKind.CUSTOMER:
            raise NotFound("no such customer", field="customer_id")
        raise PermissionDenied("reading customers needs the support, auditor or admin role")

    def require_manage_roles(self) -> None:
        if self.is_operator or self._staff_with(_ROLE_ADMIN_ROLES):
            return
        raise PermissionDenied("assigning and revoking roles needs the admin role")
