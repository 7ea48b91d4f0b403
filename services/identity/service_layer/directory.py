"""Users, customers and roles: the directory use cases.

Customers sign up themselves (CreateCustomer from the edge with no end user)
or are registered by support or admin staff; staff users are created by an
operator (`users add-staff`, services/identity/cli.py). Personal data
is sealed by the vault before it is stored and opened only to answer a caller
who may see it (domain/access.py).

Roles: AssignRole and RevokeRole are for admins (and operators). A customer's
sign-in holds only the customer role and a staff user's only staff roles, so
no token is ever both a customer and staff. Revoking a role ends the user's
sessions at once, so access tokens minted with the old roles stop working
(not just at their expiry); a new sign-in gets the new roles.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime

from services.identity.domain.access import Caller, CallerKind
from services.identity.domain.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UserAlreadyExists,
)
from services.identity.domain.events import EventKind, Outcome, SecurityEvent
from services.identity.domain.model import (
    STAFF_ROLES,
    Customer,
    Role,
    RoleChange,
    User,
    check_password,
    normalize_email,
    personal_data,
)
from services.identity.domain.sessions import EndReason

from .ports import (
    Clock,
    DependencyUnavailable,
    PasswordHasher,
    PersonalDataVault,
    RequestInfo,
    SessionRevocations,
)
from .unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("bankmesh.identity")


class Directory:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        passwords: PasswordHasher,
        vault: PersonalDataVault,
        revocations: SessionRevocations,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._passwords = passwords
        self._vault = vault
        self._revocations = revocations
        self._clock = clock

    # -- creating people --------------------------------------------------------------

    async def create_customer(
        self,
        caller: Caller,
        *,
        full_name: str,
        email: str,
        phone_number: str,
        national_id: str,
        password: str,
        request: RequestInfo,
    ) -> tuple[Customer, User]:
        caller.require_create_customer()
        data = personal_data(full_name, email, phone_number, national_id)
        check_password(password)
        password_hash = await self._passwords.hash(password)
        now = self._clock.now()
        customer = Customer(uuid.uuid4(), data, now)
        user = User(uuid.uuid4(), frozenset({Role.CUSTOMER}), password_hash, now, customer.id)
        async with self._uow() as uow:
            await uow.identity.add_customer(customer.id, self._vault.seal(customer.id, data), now)
            index = self._vault.email_index(data.email)
            if not await uow.identity.add_user(user, index, caller.actor):
                raise UserAlreadyExists("a user already signs in with this email", field="email")
            await uow.identity.record(
                SecurityEvent(
                    EventKind.CUSTOMER_CREATED,
                    Outcome.SUCCESS,
                    now,
                    actor=caller.actor,
                    user_id=user.id,
                    client_ip=request.client_ip,
                    request_id=request.request_id,
                    details={"customer_id": str(customer.id)},
                )
            )
            await uow.commit()
        return customer, user

    async def create_staff_user(
        self, actor: str, email: str, password: str, roles: Iterable[Role]
    ) -> User:
        staff_roles = frozenset(roles)
        if not staff_roles or not staff_roles <= STAFF_ROLES:
            raise InvalidRequest(
                "a staff user needs one or more of the roles support, auditor, admin, reviewer",
                field="roles",
            )
        normalized = normalize_email(email)
        check_password(password)
        password_hash = await self._passwords.hash(password)
        now = self._clock.now()
        user = User(uuid.uuid4(), staff_roles, password_hash, now)
        async with self._uow() as uow:
            if not await uow.identity.add_user(user, self._vault.email_index(normalized), actor):
                raise UserAlreadyExists("a user already signs in with this email", field="email")
            await uow.identity.record(
                SecurityEvent(
                    EventKind.STAFF_USER_CREATED,
                    Outcome.SUCCESS,
                    now,
                    actor=actor,
                    user_id=user.id,
                    details={"roles": ",".join(sorted(staff_roles))},
                )
            )
            await uow.commit()
        return user

    # -- reading ------------------------------------------------------------------------

    async def current_user(self, caller: Caller) -> tuple[User, Customer | None]:
        if caller.kind is CallerKind.SERVICE:
            raise PermissionDenied("GetCurrentUser is asked on behalf of a signed-in person")
        user_id = _uuid(caller.user_id, "user_id")
        async with self._uow() as uow:
            user = await uow.identity.get_user(user_id)
            if user is None:
                raise NotFound("no such user", field="user_id")
            customer = (
                await self._open_customer(uow, user.customer_id) if user.customer_id else None
            )
        return user, customer

    async def get_customer(self, caller: Caller, customer_id: uuid.UUID) -> Customer:
        caller.require_read_customer(customer_id)
        async with self._uow() as uow:
            return await self._open_customer(uow, customer_id)

    async def _open_customer(self, uow: UnitOfWork, customer_id: uuid.UUID) -> Customer:
        found = await uow.identity.get_customer(customer_id)
        if found is None:
            raise NotFound("no such customer", field="customer_id")
        sealed, created_at = found
        return Customer(customer_id, self._vault.open(customer_id, sealed), created_at)

    # -- roles --------------------------------------------------------------------------

    async def assign_role(
        self, caller: Caller, user_id: uuid.UUID, role: Role, request: RequestInfo
    ) -> User:
        caller.require_manage_roles()
        now = self._clock.now()
        async with self._uow() as uow:
            user = await self._user_for_role_change(uow, user_id, role)
            changed = await uow.identity.add_role(user_id, role, now, caller.actor)
            if changed:
                await uow.identity.record(
                    _role_event(EventKind.ROLE_ASSIGNED, caller, user_id, role, now, request)
                )
            await uow.commit()
        return User(
            user.id, user.roles | {role}, user.password_hash, user.created_at, user.customer_id
        )

    async def revoke_role(
        self, caller: Caller, user_id: uuid.UUID, role: Role, request: RequestInfo
    ) -> RoleChange:
        caller.require_manage_roles()
        now = self._clock.now()
        ended: tuple[uuid.UUID, ...] = ()
        async with self._uow() as uow:
            user = await self._user_for_role_change(uow, user_id, role)
            changed = await uow.identity.remove_role(user_id, role)
            if changed:
                ended = tuple(
                    await uow.identity.end_sessions_of(user_id, now, EndReason.ROLE_REVOKED)
                )
                await uow.identity.record(
                    _role_event(
                        EventKind.ROLE_REVOKED,
                        caller,
                        user_id,
                        role,
                        now,
                        request,
                        sessions_ended=str(len(ended)),
                    )
                )
            await uow.commit()
        if ended:
            try:
                await self._revocations.revoke(ended)
            except DependencyUnavailable:
                # The role is gone and the sessions cannot be refreshed; only
                # access tokens already issued live on, for minutes at most.
                log.warning(
                    "role %s revoked from user %s, but %d sessions could not be published "
                    "as revoked",
                    role,
                    user_id,
                    len(ended),
                )
        updated = User(
            user.id, user.roles - {role}, user.password_hash, user.created_at, user.customer_id
        )
        return RoleChange(updated, changed, ended)

    async def _user_for_role_change(self, uow: UnitOfWork, user_id: uuid.UUID, role: Role) -> User:
        user = await uow.identity.get_user(user_id, lock=True)
        if user is None:
            raise NotFound("no such user", field="user_id")
        if user.is_customer and role is not Role.CUSTOMER:
            raise InvalidRequest(
                "staff roles go to staff users; a customer's sign-in stays a customer's",
                field="role",
            )
        if not user.is_customer and role is Role.CUSTOMER:
            raise InvalidRequest(
                "the customer role belongs to users with a customer record", field="role"
            )
        return user


def _role_event(
    kind: EventKind,
    caller: Caller,
    user_id: uuid.UUID,
    role: Role,
    now: datetime,
    request: RequestInfo,
    **details: str,
) -> SecurityEvent:
    return SecurityEvent(
        kind,
        Outcome.SUCCESS,
        now,
        actor=caller.actor,
        user_id=user_id,
        client_ip=request.client_ip,
        request_id=request.request_id,
        details={"role": role.value, **details},
    )


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"no such {field.removesuffix('_id')}", field=field) from exc
