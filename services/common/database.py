"""What every service needs to talk to PostgreSQL through SQLAlchemy.

URLs arrive in libpq form (`postgresql://user@host/db`, as operators and
`DATABASE_URL` write them); SQLAlchemy needs the driver named.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mesh.runtime.postgres import to_sqlalchemy_url

__all__ = ["create_engine", "to_sqlalchemy_url"]


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """A pool of `pool_size` connections, plus as many again for bursts by default.

    `max_overflow=0` makes the pool a hard bound: a caller past it waits for a
    connection instead of opening one more.
    """
    return create_async_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
    )
