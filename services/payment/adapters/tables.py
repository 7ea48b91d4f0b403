"""SQLAlchemy Core mirrors of the payment tables (the DDL itself lives in migrations/)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(schema="payment")

payments = Table(
    "payments",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("scope", String),
    Column("idempotency_key", String),
    Column("source_account_id", Uuid),
    Column("destination_account_id", Uuid),
    Column("amount", BigInteger),
    Column("currency", String(3)),
    Column("reference", String),
    Column("description", String),
    Column("client_context", JSONB),
    Column("payer_customer_id", String),
    Column("status", String),
    Column("risk_outcome", String),
    Column("risk_reasons", ARRAY(String)),
    Column("risk_decision_id", String),
    Column("risk_unavailable", Boolean),
    Column("failure_reason", String),
    Column("refunded_amount", BigInteger),
    Column("review_timeout_seconds", Integer),
    Column("hold_expires_at", DateTime(timezone=True)),
    Column("review_decision", String),
    Column("review_actor", String),
    Column("review_note", String),
    Column("version", Integer),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

status_changes = Table(
    "status_changes",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("payment_id", Uuid),
    Column("from_status", String),
    Column("to_status", String),
    Column("reason", String),
    Column("actor", String),
    Column("changed_at", DateTime(timezone=True)),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("payment_id", Uuid),
    Column("scope", String),
    Column("idempotency_key", String),
    Column("amount", BigInteger),
    Column("reason", String),
    Column("status", String),
    Column("failure_reason", String),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("operation", String),
    Column("fingerprint", LargeBinary),
    Column("payment_id", Uuid),
    Column("refund_id", Uuid),
    Column("response", JSONB),
    Column("created_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
)
