"""The identity service's PostgreSQL repository: rows <-> domain values, nothing more.

Every method runs on the connection of the caller's transaction; the unit of
work owns begin/commit. Personal data arrives here already sealed, and an
email only as its blind index: nothing this module writes is plaintext PII.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit.events import AuditEvent
from services.common.audit.store import AuditTrail
from services.identity.domain.events import SecurityEvent
from services.identity.domain.model import FailedSignIns, Role, User
from services.identity.domain.sessions import RefreshToken, Session
from services.identity.service_layer.ports import SealedPersonalData

from . import tables as t
from .pii import KEY_ID_BYTES, KEY_ID_SQL_OFFSET

_KEY_ID = struct.Struct(">I")


class IdentityRepository:
    def __init__(self, connection: AsyncConnection, audit: AuditTrail | None = None) -> None:
        self._audit = audit if audit is not None else AuditTrail()
        self._conn = connection

    # -- users ------------------------------------------------------------------------------

    async def add_user(self, user: User, email_index: bytes, by: str) -> bool:
        stmt = (
            pg_insert(t.users)
            .values(
                id=user.id,
                customer_id=user.customer_id,
                email_index=email_index,
                password_hash=user.password_hash,
                created_at=user.created_at,
                updated_at=user.created_at,
            )
            .on_conflict_do_nothing(index_elements=["email_index"])
            .returning(t.users.c.id)
        )
        if (await self._conn.execute(stmt)).first() is None:
            return False
        for role in user.roles:
            await self.add_role(user.id, role, user.created_at, by)
        return True

    async def user_by_email_index(self, email_index: bytes) -> User | None:
        return await self._user(t.users.c.email_index == email_index, lock=False)

    async def get_user(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
        return await self._user(t.users.c.id == user_id, lock=lock)

    async def _user(self, where: ColumnElement[bool], *, lock: bool) -> User | None:
        stmt = select(t.users).where(where)
        if lock:
            stmt = stmt.with_for_update()
        row = (await self._conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        roles = await self._conn.scalars(
            select(t.user_roles.c.role).where(t.user_roles.c.user_id == row["id"])
        )
        return User(
            id=row["id"],
            roles=frozenset(Role(role) for role in roles),
            password_hash=row["password_hash"],
            created_at=row["created_at"],
            customer_id=row["customer_id"],
        )

    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str, now: datetime
    ) -> None:
        await self._conn.execute(
            update(t.users)
            .where(t.users.c.id == user_id)
            .values(password_hash=password_hash, updated_at=now)
        )

    async def add_role(self, user_id: uuid.UUID, role: Role, now: datetime, by: str) -> bool:
        stmt = (
            pg_insert(t.user_roles)
            .values(user_id=user_id, role=role.value, granted_at=now, granted_by=by)
            .on_conflict_do_nothing()
            .returning(t.user_roles.c.role)
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def remove_role(self, user_id: uuid.UUID, role: Role) -> bool:
        r = t.user_roles
        stmt = delete(r).where(r.c.user_id == user_id, r.c.role == role.value).returning(r.c.role)
        return (await self._conn.execute(stmt)).first() is not None

    # -- customers --------------------------------------------------------------------------

    async def add_customer(
        self, customer_id: uuid.UUID, sealed: SealedPersonalData, now: datetime
    ) -> None:
        await self._conn.execute(
            t.customers.insert().values(
                id=customer_id, **_sealed_row(sealed), created_at=now, updated_at=now
            )
        )

    async def get_customer(
        self, customer_id: uuid.UUID
    ) -> tuple[SealedPersonalData, datetime] | None:
        row = (
            (await self._conn.execute(select(t.customers).where(t.customers.c.id == customer_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return _sealed(row), row["created_at"]

    async def customers_not_on_key(
        self, key_id: int, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, SealedPersonalData]]:
        c = t.customers
        wanted = _KEY_ID.pack(key_id)
        stmt = (
            select(c)
            .where(or_(*(_key_id_of(c.c[name]) != wanted for name in t.ENCRYPTED_COLUMNS)))
            .order_by(c.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(c.c.id > after)
        rows = (await self._conn.execute(stmt)).mappings().all()
        return [(row["id"], _sealed(row)) for row in rows]

    async def replace_sealed(
        self, customer_id: uuid.UUID, old: SealedPersonalData, new: SealedPersonalData
    ) -> bool:
        c = t.customers
        unchanged = and_(*(c.c[name] == value for name, value in _sealed_row(old).items()))
        stmt = (
            update(c)
            .where(c.c.id == customer_id, unchanged)
            .values(**_sealed_row(new))
            .returning(c.c.id)
        )
        return (await self._conn.execute(stmt)).first() is not None

    async def customer_on_key(
        self, key_id: int
    ) -> tuple[uuid.UUID, SealedPersonalData, bytes | None] | None:
        c, u = t.customers, t.users
        wanted = _KEY_ID.pack(key_id)
        stmt = (
            select(c, u.c.email_index)
            .select_from(c.outerjoin(u, u.c.customer_id == c.c.id))
            .where(or_(*(_key_id_of(c.c[name]) == wanted for name in t.ENCRYPTED_COLUMNS)))
            .limit(1)
        )
        row = (await self._conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        index = row["email_index"]
        return row["id"], _sealed(row), bytes(index) if index is not None else None

    async def ciphertexts_by_key(self) -> dict[int, int]:
        c = t.customers
        keys = union_all(
            *(select(_key_id_of(c.c[name]).label("key_id")) for name in t.ENCRYPTED_COLUMNS)
        ).subquery()
        stmt = select(keys.c.key_id, func.count()).group_by(keys.c.key_id)
        rows = (await self._conn.execute(stmt)).all()
        return {_KEY_ID.unpack(bytes(key))[0]: int(count) for key, count in rows}

    # -- failed sign-ins --------------------------------------------------------------------

    async def failed_sign_ins(self, email_index: bytes) -> FailedSignIns:
        f = t.failed_sign_ins
        row = (
            (await self._conn.execute(select(f).where(f.c.email_index == email_index)))
            .mappings()
            .first()
        )
        return FailedSignIns(row["failures"], row["locked_until"]) if row else FailedSignIns()

    async def lock_failed_sign_ins(self, email_index: bytes) -> FailedSignIns:
        f = t.failed_sign_ins
        # A row to lock even for the first failure, so concurrent failures count one by one.
        await self._conn.execute(
            pg_insert(f)
            .values(email_index=email_index, failures=0, locked_until=None, updated_at=func.now())
            .on_conflict_do_nothing(index_elements=["email_index"])
        )
        row = (
            (
                await self._conn.execute(
                    select(f).where(f.c.email_index == email_index).with_for_update()
                )
            )
            .mappings()
            .one()
        )
        return FailedSignIns(row["failures"], row["locked_until"])

    async def save_failed_sign_ins(
        self, email_index: bytes, state: FailedSignIns, now: datetime
    ) -> None:
        f = t.failed_sign_ins
        if state.failures == 0 and (state.locked_until is None or state.locked_until <= now):
            await self._conn.execute(delete(f).where(f.c.email_index == email_index))
            return
        await self._conn.execute(
            update(f)
            .where(f.c.email_index == email_index)
            .values(failures=state.failures, locked_until=state.locked_until, updated_at=now)
        )

    # -- sessions and refresh tokens ---------------------------------------------------------

    async def add_session(self, session: Session, client_ip: str) -> None:
        await self._conn.execute(
            t.sessions.insert().values(
                id=session.id,
                user_id=session.user_id,
                created_at=session.created_at,
                expires_at=session.expires_at,
                client_ip=client_ip,
            )
        )

    async def lock_session(self, session_id: uuid.UUID) -> Session | None:
        s = t.sessions
        row = (
            (await self._conn.execute(select(s).where(s.c.id == session_id).with_for_update()))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return Session(
            id=row["id"],
            user_id=row["user_id"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            ended_at=row["ended_at"],
            end_reason=row["end_reason"],
        )

    async def end_session(self, session_id: uuid.UUID, now: datetime, reason: str) -> None:
        s = t.sessions
        await self._conn.execute(
            update(s)
            .where(s.c.id == session_id, s.c.ended_at.is_(None))
            .values(ended_at=now, end_reason=reason)
        )

    async def end_sessions_of(
        self, user_id: uuid.UUID, now: datetime, reason: str
    ) -> Sequence[uuid.UUID]:
        s = t.sessions
        stmt = (
            update(s)
            .where(s.c.user_id == user_id, s.c.ended_at.is_(None), s.c.expires_at > now)
            .values(ended_at=now, end_reason=reason)
            .returning(s.c.id)
        )
        return list((await self._conn.scalars(stmt)).all())

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._conn.execute(
            t.refresh_tokens.insert().values(
                id=token.id,
                session_id=token.session_id,
                token_hash=token.token_hash,
                created_at=token.created_at,
                used_at=token.used_at,
            )
        )

    async def refresh_token_by_hash(self, token_hash: bytes) -> RefreshToken | None:
        r = t.refresh_tokens
        row = (
            (await self._conn.execute(select(r).where(r.c.token_hash == token_hash)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return RefreshToken(
            id=row["id"],
            session_id=row["session_id"],
            token_hash=bytes(row["token_hash"]),
            created_at=row["created_at"],
            used_at=row["used_at"],
        )

    async def spend_refresh_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        r = t.refresh_tokens
        # Conditional: even without the session lock, only one spender can win.
        stmt = (
            update(r)
            .where(r.c.id == token_id, r.c.used_at.is_(None))
            .values(used_at=now)
            .returning(r.c.id)
        )
        return (await self._conn.execute(stmt)).first() is not None

    # -- security events --------------------------------------------------------------------

    async def record(self, event: SecurityEvent) -> None:
        """A security event: in `security_events` (per user) and in the audit chain."""
        self._audit.add(audit_event(event))
        await self._conn.execute(
            t.security_events.insert().values(
                occurred_at=event.occurred_at,
                event=event.kind.value,
                outcome=event.outcome.value,
                actor=event.actor,
                user_id=event.user_id,
                session_id=event.session_id,
                client_ip=event.client_ip,
                request_id=event.request_id,
                details=dict(event.details),
            )
        )


def _key_id_of(column: ColumnElement[bytes]) -> ColumnElement[bytes]:
    """The data key id inside an envelope, as 4 bytes (see adapters/pii.py)."""
    return func.substring(column, literal(KEY_ID_SQL_OFFSET), literal(KEY_ID_BYTES))


def _sealed_row(sealed: SealedPersonalData) -> dict[str, bytes]:
    return {
        "full_name": sealed.full_name,
        "email": sealed.email,
        "phone_number": sealed.phone_number,
        "national_id": sealed.national_id,
    }


def _sealed(row: RowMapping) -> SealedPersonalData:
    return SealedPersonalData(
        full_name=bytes(row["full_name"]),
        email=bytes(row["email"]),
        phone_number=bytes(row["phone_number"]),
        national_id=bytes(row["national_id"]),
    )


def audit_event(event: SecurityEvent) -> AuditEvent:
    """The audit log's view of a security event: same who, what, when, where, outcome."""
    actor = event.actor
    if _is_uuid(actor):
        actor = f"user:{actor}"
    details: dict[str, str] = dict(event.details)
    if event.session_id is not None:
        details["session_id"] = str(event.session_id)
    if event.client_ip:
        details["client_ip"] = event.client_ip
    return AuditEvent(
        action=event.kind.value,
        outcome=event.outcome,
        occurred_at=event.occurred_at,
        actor=actor or "anonymous",
        subject=f"user:{event.user_id}" if event.user_id else "",
        source=event.request_id,
        details=details,
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
