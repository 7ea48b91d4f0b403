"""The storage port: one database transaction with the identity repository.

Storage failures surface as `StorageUnavailable` or `WriteConflict`
(services.common.storage), already translated by the adapter, so nothing
above this layer knows about psycopg or SQLAlchemy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

# The storage errors are the same for every service; re-exported as part of this port.
from services.common.storage import StorageError as StorageError
from services.common.storage import StorageUnavailable as StorageUnavailable
from services.common.storage import WriteConflict as WriteConflict
from services.identity.domain.events import SecurityEvent
from services.identity.domain.model import FailedSignIns, Role, User
from services.identity.domain.sessions import RefreshToken, Session

from .ports import SealedPersonalData


class IdentityRepository(Protocol):
    # -- users --
    async def add_user(self, user: User, email_index: bytes, by: str) -> bool:
        """Insert with its roles (granted by `by`) unless the email index is taken; True if so."""
        ...

    async def user_by_email_index(self, email_index: bytes) -> User | None: ...

    async def get_user(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None: ...

    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str, now: datetime
    ) -> None: ...

    async def add_role(self, user_id: uuid.UUID, role: Role, now: datetime, by: str) -> bool: ...

    async def remove_role(self, user_id: uuid.UUID, role: Role) -> bool: ...

    # -- customers --
    async def add_customer(
        self, customer_id: uuid.UUID, sealed: SealedPersonalData, now: datetime
    ) -> None: ...

    async def get_customer(
        self, customer_id: uuid.UUID
    ) -> tuple[SealedPersonalData, datetime] | None: ...

    async def customers_not_on_key(
        self, key_id: int, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, SealedPersonalData]]:
        """Customers with a ciphertext under another key than `key_id`, by id, after `after`."""
        ...

    async def replace_sealed(
        self, customer_id: uuid.UUID, old: SealedPersonalData, new: SealedPersonalData
    ) -> bool:
        """Write `new` if the row still holds `old` (a concurrent update wins)."""
        ...

    async def customer_on_key(
        self, key_id: int
    ) -> tuple[uuid.UUID, SealedPersonalData, bytes | None] | None:
        """One customer with a ciphertext under `key_id`, and their user's email index."""
        ...

    async def ciphertexts_by_key(self) -> dict[int, int]:
        """How many ciphertexts each data key id protects, over every encrypted column."""
        ...

    # -- failed sign-ins, by email blind index --
    async def lock_failed_sign_ins(self, email_index: bytes) -> FailedSignIns:
        """The state for this email, locked until the transaction ends."""
        ...

    async def failed_sign_ins(self, email_index: bytes) -> FailedSignIns: ...

    async def save_failed_sign_ins(
        self, email_index: bytes, state: FailedSignIns, now: datetime
    ) -> None: ...

    # -- sessions and refresh tokens --
    async def add_session(self, session: Session, client_ip: str) -> None: ...

    async def lock_session(self, session_id: uuid.UUID) -> Session | None: ...

    async def end_session(self, session_id: uuid.UUID, now: datetime, reason: str) -> None: ...

    async def end_sessions_of(
        self, user_id: uuid.UUID, now: datetime, reason: str
    ) -> Sequence[uuid.UUID]:
        """End every live session of the user; their ids."""
        ...

    async def add_refresh_token(self, token: RefreshToken) -> None: ...

    async def refresh_token_by_hash(self, token_hash: bytes) -> RefreshToken | None: ...

    async def spend_refresh_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Mark it used unless it already is; True when this call spent it."""
        ...

    # -- security events --
    async def record(self, event: SecurityEvent) -> None: ...


class UnitOfWork(Protocol):
    @property
    def identity(self) -> IdentityRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
