"""Alembic environment for the identity schema.

Run through `services.identity.adapters.migrations.upgrade(url)` (which the
launcher, via `services.identity.app.migrate`, and the tests call) rather than
the alembic CLI, so the database URL never lives in a config file. The
version table sits in the public schema under a per-service name, so each
service keeps its own history even when two share a database.
"""

from alembic import context
from sqlalchemy import create_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "upgrade() sets sqlalchemy.url"

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        version_table=config.get_main_option("version_table") or "alembic_version",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
