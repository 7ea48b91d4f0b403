"""Schema migrations of the risk service (Alembic, one history per service)."""

from __future__ import annotations

from pathlib import Path

from services.common import migrations

VERSION_TABLE = "alembic_version_risk"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the risk schema up to `revision`; safe to run on every start."""
    migrations.upgrade(Path(__file__).parent, VERSION_TABLE, database_url, revision)
