"""Alembic, the same way for every service: one history per service, no config file.

Each service keeps its revisions in `services/<name>/adapters/migrations/versions`
and its own version table (`alembic_version_<name>`), so two services can
share a database without sharing history. The URL is passed in code
(`upgrade(url)`), never written to an ini file. A service's `env.py` is one
call to `run_migrations()`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine

from services.common.database import to_sqlalchemy_url


def alembic_config(script_location: Path, version_table: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(database_url))
    config.set_main_option("version_table", version_table)
    return config


def upgrade(
    script_location: Path, version_table: str, database_url: str, revision: str = "head"
) -> None:
    """Bring a service's schema up to `revision`; safe to run on every start."""
    command.upgrade(alembic_config(script_location, version_table, database_url), revision)


def run_migrations() -> None:
    """The body of every service's env.py (online mode, a transaction per migration)."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations through the service's upgrade(url)")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                version_table=config.get_main_option("version_table") or "alembic_version",
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
