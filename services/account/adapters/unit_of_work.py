"""A SQLAlchemy transaction as the ledger's unit of work (see services.common.storage)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.storage import SqlTransaction

from .repository import LedgerRepository


class SqlUnitOfWork(SqlTransaction):
    database = "ledger"
    audit_service = "account"
    ledger: LedgerRepository

    def bind(self, connection: AsyncConnection) -> None:
        self.ledger = LedgerRepository(connection, self.audit)
