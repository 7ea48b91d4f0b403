"""SQLAlchemy Core mirrors of the ledger tables (the DDL itself lives in migrations/)."""

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
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(schema="ledger")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("customer_id", String),
    Column("currency", String(3)),
    Column("type", String),
    Column("status", String),
    Column("debits_must_not_exceed_credits", Boolean),
    Column("credits_must_not_exceed_debits", Boolean),
    Column("overdraft_limit", BigInteger),
    Column("metadata", JSONB),
    Column("debits_posted", BigInteger),
    Column("credits_posted", BigInteger),
    Column("debits_pending", BigInteger),
    Column("credits_pending", BigInteger),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("last_entry_at", DateTime(timezone=True)),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", String),
    Column("debit_account_id", Uuid),
    Column("credit_account_id", Uuid),
    Column("amount", BigInteger),
    Column("currency", String(3)),
    Column("pending_id", Uuid),
    Column("timeout_seconds", Integer),
    Column("expires_at", DateTime(timezone=True)),
    Column("code", Integer),
    Column("metadata", JSONB),
    Column("request_hash", LargeBinary),
    Column("created_at", DateTime(timezone=True)),
)

entries = Table(
    "entries",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("transfer_id", Uuid),
    Column("account_id", Uuid),
    Column("direction", String(1)),
    Column("posted_delta", BigInteger),
    Column("pending_delta", BigInteger),
    Column("debits_posted", BigInteger),
    Column("credits_posted", BigInteger),
    Column("debits_pending", BigInteger),
    Column("credits_pending", BigInteger),
    Column("created_at", DateTime(timezone=True)),
)

failed_transfers = Table(
    "failed_transfers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("reason", String),
    Column("request_hash", LargeBinary),
    Column("failed_at", DateTime(timezone=True)),
)

expiring_holds = Table(
    "expiring_holds",
    metadata,
    Column("transfer_id", Uuid, primary_key=True),
    Column("debit_account_id", Uuid),
    Column("credit_account_id", Uuid),
    Column("expires_at", DateTime(timezone=True)),
)
