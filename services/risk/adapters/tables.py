"""SQLAlchemy Core mirror of the decisions table (the DDL itself lives in migrations/)."""

from __future__ import annotations

from sqlalchemy import ARRAY, Boolean, Column, DateTime, Float, MetaData, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(schema="risk")

decisions = Table(
    "decisions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("transaction_id", Text),
    Column("inputs_hash", String(64)),
    Column("inputs", JSONB),
    Column("features", JSONB),
    Column("score", Float(precision=53)),
    Column("rules_score", Float(precision=53)),
    Column("model_score", Float(precision=53)),
    Column("decision", Text),
    Column("reason_codes", ARRAY(Text)),
    Column("ruleset_version", Text),
    Column("model_version", Text),
    Column("fallback", Boolean),
    Column("created_at", DateTime(timezone=True)),
)
