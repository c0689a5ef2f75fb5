"""Engines: turn a SNIP_DATABASE_URL into an async SQLAlchemy engine with the right settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(database_url: str) -> URL:
    """`sqlite:///x.db` → `sqlite+aiosqlite:///x.db`, `postgresql://…` → `postgresql+asyncpg://…`."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if url.drivername == backend or url.drivername in {"postgres", "postgresql+psycopg2"}:
        url = url.set(drivername=ASYNC_DRIVERS[backend])
    return url


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def make_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    connect_timeout: float = 2.0,
    statement_timeout: float = 5.0,
    echo: bool = False,
) -> AsyncEngine:
    """An engine that fails fast: a dead or frozen database gives an error in seconds, not a hang."""
    url = async_url(database_url)
    # A steady pool: overflow connections are opened and closed per burst of cache misses,
    # which for SQLite means a new thread and its PRAGMAs each time.
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": False, "pool_size": pool_size,
                              "max_overflow": pool_size, "pool_timeout": connect_timeout}
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"timeout": connect_timeout, "command_timeout": statement_timeout}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers, a busy timeout instead of instant 'database is locked'."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
