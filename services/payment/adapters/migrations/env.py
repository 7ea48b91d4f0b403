"""Alembic environment of the payment service: see services.common.migrations."""

from services.common.migrations import run_migrations

run_migrations()
