"""A SQLAlchemy transaction as the payment service's unit of work (see services.common.storage)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.storage import SqlTransaction

from .repository import PaymentRepository


class SqlUnitOfWork(SqlTransaction):
    database = "payment"
    audit_service = "payment"
    payments: PaymentRepository

    def bind(self, connection: AsyncConnection) -> None:
        self.payments = PaymentRepository(connection, self.audit)
