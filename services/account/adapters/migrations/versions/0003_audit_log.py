"""The tamper-evident audit log (services.common.audit), and a role for the service.

`audit.events` is hash-chained by its own trigger and append-only twice:
triggers refuse UPDATE, DELETE and TRUNCATE, and `bankmesh_app`, the role
the service runs as, may only SELECT and INSERT it (while keeping
its usual rights on the ledger schema).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from services.common.audit import schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(schema.AUDIT_LOG_SQL)
    op.execute(schema.app_role_grants_sql(["ledger"]))


def downgrade() -> None:
    op.execute("DROP SCHEMA audit CASCADE")
