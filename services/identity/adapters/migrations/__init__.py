"""Schema migrations of the identity service (Alembic, one history per service)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from services.common.database import to_sqlalchemy_url

VERSION_TABLE = "alembic_version_identity"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(database_url))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the identity schema up to `revision`; safe to run on every start."""
    command.upgrade(alembic_config(database_url), revision)
