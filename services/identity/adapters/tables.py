"""SQLAlchemy Core mirrors of the identity tables (the DDL itself lives in migrations/)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

metadata = MetaData(schema="identity")

customers = Table(
    "customers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("full_name", LargeBinary),
    Column("email", LargeBinary),
    Column("phone_number", LargeBinary),
    Column("national_id", LargeBinary),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

ENCRYPTED_COLUMNS = ("full_name", "email", "phone_number", "national_id")

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("customer_id", Uuid),
    Column("email_index", LargeBinary),
    Column("password_hash", String),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("role", String, primary_key=True),
    Column("granted_at", DateTime(timezone=True)),
    Column("granted_by", String),
)

failed_sign_ins = Table(
    "failed_sign_ins",
    metadata,
    Column("email_index", LargeBinary, primary_key=True),
    Column("failures", Integer),
    Column("locked_until", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid),
    Column("created_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_reason", String),
    Column("client_ip", String),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("session_id", Uuid),
    Column("token_hash", LargeBinary),
    Column("created_at", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)),
)

security_events = Table(
    "security_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("occurred_at", DateTime(timezone=True)),
    Column("event", String),
    Column("outcome", String),
    Column("actor", String),
    Column("user_id", Uuid),
    Column("session_id", Uuid),
    Column("client_ip", String),
    Column("request_id", String),
    Column("details", JSONB),
)
