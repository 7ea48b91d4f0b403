"""What every service needs to talk to PostgreSQL through SQLAlchemy.

URLs arrive in libpq form (`postgresql://user@host/db`, as operators and
`DATABASE_URL` write them); SQLAlchemy needs the driver named.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def to_sqlalchemy_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://...; a URL naming a driver is left alone."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
