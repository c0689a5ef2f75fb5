"""Bulk link storage for `snip import` and `snip export`: big batches, no per-row round trips.

`add_many` writes one chunk in one transaction: multi-row `INSERT ... ON CONFLICT DO NOTHING
RETURNING code` statements (a thousand rows each, parameters bound by the driver, no per-row
SQLAlchemy work) let the unique indexes on code and import key decide what is new, and say
which rows went in; one INSERT ... SELECT then attaches their tags. `iter_links` pages
through every link by id (keyset), a batch at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from snip.adapters.sql.repository import _link
from snip.adapters.sql.schema import link_tags, links
from snip.domain.links import Link
from snip.service_layer.ports import ImportRow, Inserted

LOOKUP_CHUNK = 5000  # bound parameters per IN (...): well under SQLite's and asyncpg's limits


_COLUMNS = ("code", "url", "url_digest", "host_key", "owner", "title", "redirect_status",
            "expires_at", "max_visits", "visits", "disabled", "password_hash", "created_at",
            "updated_at", "import_key")
SQLITE_CACHE_KIB = 64 * 1024  # for the importing connection only (256 MiB: no faster)
SQLITE_CHECKPOINT_PAGES = 50_000  # ~200 MB of WAL between checkpoints (default 1,000)
ROWS_PER_STATEMENT = 1000  # 15 parameters each: within SQLite's 32766 and asyncpg's 32767


class SqlLinkImportStore:
    """`LinkImportStore` on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        dialect_insert: Any = postgresql.insert if self._postgres else sqlite.insert
        self._insert_tags = dialect_insert(link_tags).from_select(
            ["link_id", "tag"],
            select(links.c.id, bindparam("b_tag")).where(links.c.code == bindparam("b_code")),
        ).on_conflict_do_nothing()
        self._statements: dict[int, str] = {}
        self._dates: dict[datetime, str] = {}

    def _statement(self, rows: int) -> str:
        """`INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING code`, made once
        per row count: one round trip says which rows went in."""
        sql = self._statements.get(rows)
        if sql is None:
            width = len(_COLUMNS)
            if self._postgres:
                values = ", ".join(
                    "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                    for r in range(rows))
            else:
                one = "(" + ", ".join("?" * width) + ")"
                values = ", ".join([one] * rows)
            # Only constant column names and placeholders go into the text; values are bound.
            sql = (f"INSERT INTO links ({', '.join(_COLUMNS)}) VALUES {values} "  # noqa: S608
                   "ON CONFLICT DO NOTHING RETURNING code")
            if len(self._statements) < 8:
                self._statements[rows] = sql
        return sql

    def _date(self, value: datetime | None) -> Any:
        """SQLite stores times as SQLAlchemy writes them (UTC text); PostgreSQL takes objects."""
        if value is None or self._postgres:
            return value
        text = self._dates.get(value)
        if text is None:
            text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            if len(self._dates) > 10_000:
                self._dates.clear()
            self._dates[value] = text
        return text

    def _params(self, rows: Sequence[ImportRow]) -> list[Any]:
        date = self._date
        flat: list[Any] = []
        for r in rows:
            created = date(r.created_at)
            flat.extend((r.code, r.url, r.url_digest, r.host_key, r.owner, r.title,
                         r.redirect_status, date(r.expires_at), r.max_visits, r.visits,
                         r.disabled, r.password_hash, created, created, r.import_key))
        return flat

    async def add_many(self, rows: Sequence[ImportRow]) -> Inserted:
        if not rows:
            return Inserted(0, 0, [])
        inserted: set[str] = set()
        # Of rows sharing a code, the first in the file is the one tried.
        first: dict[str, ImportRow] = {}
        later: list[ImportRow] = []
        for r in rows:
            if first.setdefault(r.code, r) is not r:
                later.append(r)
        # In digest order, the url_digest and import_key indexes (both from the URL's hash)
        # are written front to back, a page at a time, instead of at random.
        ordered = sorted(first.values(), key=_by_digest)
        async with self._engine.begin() as conn:
            if not self._postgres:
                # Random codes and digests land all over six indexes: with SQLite's default
                # 2 MiB page cache most of a big import's time went to re-reading pages.
                await conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                # And checkpoint the WAL less often: a page written by one batch is often
                # written again by the next, and each checkpoint copies it to the file again.
                await conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            for start in range(0, len(ordered), ROWS_PER_STATEMENT):
                part = ordered[start:start + ROWS_PER_STATEMENT]
                result = await conn.exec_driver_sql(self._statement(len(part)),
                                                    tuple(self._params(part)))
                inserted.update(code for (code,) in result.fetchall())
            new = [r for r in ordered if r.code in inserted]
            missed = [r for r in ordered if r.code not in inserted] + later
            # A random code that was not inserted clashed with a code, unless its import key
            # is there now (a re-run, or the same URL earlier in this file): draw again.
            keyed = await _existing(conn, links.c.import_key,
                                    [r.import_key for r in missed if r.generated])
            retry = [r for r in missed if r.generated and r.import_key not in keyed]
            tagged = [{"b_code": r.code, "b_tag": t} for r in new for t in r.tags]
            if tagged:
                await conn.execute(self._insert_tags, tagged)
        return Inserted(len(new), len(missed) - len(retry), retry)

    async def iter_links(self, batch: int = 1000) -> AsyncIterator[list[Link]]:
        last = 0
        columns = [c for c in links.c if c.name not in ("import_key", "host_key", "blocked_by")]
        while True:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(
                    select(*columns).where(links.c.id > last).order_by(links.c.id).limit(batch)
                )).mappings().all()
                if not rows:
                    return
                ids = [r["id"] for r in rows]
                tags: dict[int, list[str]] = {}
                for link_id, tag in await conn.execute(
                    select(link_tags.c.link_id, link_tags.c.tag)
                    .where(link_tags.c.link_id.in_(ids)).order_by(link_tags.c.link_id,
                                                                   link_tags.c.tag)
                ):
                    tags.setdefault(link_id, []).append(tag)
            last = ids[-1]
            yield [_link(r, tuple(tags.get(r["id"], ()))) for r in rows]


def _by_digest(row: ImportRow) -> str:
    return row.url_digest


async def _existing(conn: AsyncConnection, column: Any, values: list[Any]) -> set[Any]:
    found: set[Any] = set()
    for start in range(0, len(values), LOOKUP_CHUNK):
        part = values[start:start + LOOKUP_CHUNK]
        found.update((await conn.execute(select(column).where(column.in_(part)))).scalars())
    return found
