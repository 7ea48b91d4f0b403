"""A SQLAlchemy transaction as the identity service's unit of work (see services.common.storage)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.storage import SqlTransaction

from .repository import IdentityRepository


class SqlUnitOfWork(SqlTransaction):
    database = "identity"
    audit_service = "identity"
    identity: IdentityRepository

    def bind(self, connection: AsyncConnection) -> None:
        self.identity = IdentityRepository(connection, self.audit)
