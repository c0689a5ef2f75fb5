"""Engines: turn a SNIP_DATABASE_URL into an async SQLAlchemy engine with the right settings."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

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
    pool_timeout: float = 10.0,
    echo: bool = False,
) -> AsyncEngine:
    """An engine that fails fast: a dead or frozen database gives an error in seconds, not a hang.

    And one that recovers by itself: connections the database dropped or stopped answering on
    are thrown away and replaced, so snip needs no restart when the database is back.
    """
    url = async_url(database_url)
    # A steady pool: overflow connections are opened and closed per burst of cache misses,
    # which for SQLite means a new thread and its PRAGMAs each time.
    # No pool_pre_ping: it costs a round trip (asyncpg: three) on every checkout, i.e. on every
    # cache-miss redirect, and `_recover_postgres` gets the same recovery without one.
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": False, "pool_size": pool_size,
                              "max_overflow": pool_size,
                              # A burst waits its turn for a connection; only a long wait is an
                              # outage (503), not every request beyond the pool's size.
                              "pool_timeout": pool_timeout}
    if url.get_backend_name() == "postgresql":
        # `timeout` bounds opening a connection (refused: at once; frozen or unroutable: this
        # long), `command_timeout` every statement, COMMIT and ROLLBACK included.
        kwargs["connect_args"] = {"timeout": connect_timeout, "command_timeout": statement_timeout}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _tune_sqlite(engine)
    else:
        _recover_postgres(engine)
    return engine


def _recover_postgres(engine: AsyncEngine) -> None:
    """Pool hooks so that a restarted, stopped or frozen PostgreSQL costs one quick error at most.

    - A connection the server closed (restart, `pg_ctl stop`, failover, pg_terminate_backend) is
      known to asyncpg as soon as the close arrives: the `checkout` hook hands it back as
      disconnected, and SQLAlchemy retries the checkout on a new connection. This is free (no
      round trip), so the first request after the database returns succeeds.
    - A statement that timed out (the server is frozen, unreachable or stuck) costs no more than
      `command_timeout`: SQLAlchemy already drops such a connection rather than roll back on it,
      and here its socket is aborted at once rather than closed gracefully, which would wait
      2 s more for a frozen server. (The cost: a query that is merely slow is not cancelled on
      the server; it ends when it next writes to the dead socket, or at the server's own
      statement_timeout if the operator sets one, e.g. ALTER ROLE snip SET statement_timeout.)
    Disconnects SQLAlchemy recognises itself (asyncpg reports the connection closed) invalidate
    the whole pool, as by default: after a restart, every older connection is dead.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        driver = record.driver_connection
        if driver is not None and driver.is_closed():
            raise DisconnectionError("PostgreSQL closed this pooled connection")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        connection = context.connection
        if connection is None or connection.invalidated:
            return
        error = context.original_exception
        if isinstance(error, TimeoutError):  # (a subclass of OSError: test it first)
            # `command_timeout` fired. SQLAlchemy counts a TimeoutError as a disconnect of this
            # connection only (the server may just be slow for this one statement) and will
            # close it; abort its socket first, or the "graceful" close waits 2 s on a frozen
            # server for an answer to asyncpg's cancel request and Terminate message.
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = False
            with contextlib.suppress(Exception):
                connection.connection.driver_connection.terminate()  # type: ignore[union-attr]
        elif isinstance(error, OSError):
            # A socket error mid-statement, raised by asyncpg as is (not as a DBAPI error, so
            # SQLAlchemy's `is_disconnect` does not look at it): the connection is gone.
            context.is_disconnect = True


def _null(_value: None) -> None:
    return None


# The sqlite3 module binds str, int, float and bytes at once, but looks every other value up as
# a possible adapter first, None included: a dictionary miss, then two failed attribute
# lookups, about 0.6 µs for each NULL. A click row holds two to five NULLs (no bot reason, no
# country, no referrer), so on the click writer's path that was about 5 % of its work. An
# adapter registered for None is found at the first step, and None is still bound as NULL.
# (Process-wide, as every sqlite3 adapter is; it changes no value that is stored.)
sqlite3.register_adapter(type(None), _null)


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
