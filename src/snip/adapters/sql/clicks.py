"""The click store on SQL: one INSERT per batch, idempotent on the click id, sharded counters.

A batch is one transaction of two statements: the clicks (`ON CONFLICT (id) DO NOTHING
RETURNING id`, so a click written twice is stored once and we learn which rows are new) and the
per-link visit counters of the new, counted clicks, added to ONE shard of each link's counter
rows (`ON CONFLICT (code, shard) DO UPDATE SET clicks = clicks + excluded.clicks`). The shard
is drawn per batch, so writers in several processes rarely touch the same row and a hot link
does not serialise them; a link's visits are `links.visits` plus the sum of its shards.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from snip.adapters.sql.repository import transaction
from snip.adapters.sql.schema import clicks, link_counters
from snip.domain.clicks import Click
from snip.domain.errors import StorageUnavailable

MAX_BATCH = 1000  # one statement (insertmanyvalues pages 1000 rows); 14,000 parameters
LARGE_BATCH_CACHE_KIB = 64 * 1024  # SQLite page cache of the click writer's connection


class SqlClickStore:
    """`ClickStore` over the engine the links use (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, shards: int = 8, keep_clicks: bool = True,
                 large_batches: bool = False) -> None:
        """`large_batches`: the click-writer process's store, given tens of thousands of clicks
        at once. On SQLite a batch is then one transaction however large, its rows sorted by
        (code, time), with a larger page cache: each leaf of the `(code, ts)` index is written
        once per batch rather than once per click (docs/performance.md, "Click recording
        cost")."""
        self._engine = engine
        self._keep_clicks = keep_clicks
        self._large = large_batches and engine.dialect.name == "sqlite" and keep_clicks
        self._shards = max(1, shards)
        self._dialect = engine.dialect.name
        bind = clicks.c.ts.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._ts: Any = lambda at: bind(datetime.fromtimestamp(at, UTC)) if bind else (
            datetime.fromtimestamp(at, UTC))
        # SQLite stores DATETIME as text: formatted here from a per-second cache, 3x cheaper
        # than SQLAlchemy's processor (a test checks they agree to the microsecond).
        self._ts_is_text = engine.dialect.name == "sqlite" and bind is not None
        insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert_clicks = (insert(clicks).on_conflict_do_nothing(index_elements=[clicks.c.id])
                               .returning(clicks.c.id))
        upsert = insert(link_counters)
        self._add_counts = upsert.on_conflict_do_update(
            index_elements=[link_counters.c.code, link_counters.c.shard],
            set_={"clicks": link_counters.c.clicks + upsert.excluded.clicks},
        )

    async def write(self, batch: Sequence[Click]) -> int:
        """Store `batch`; returns how many clicks were new (not already stored)."""
        if not batch:
            return 0
        if len(batch) > MAX_BATCH and not self._large:
            total = 0
            for start in range(0, len(batch), MAX_BATCH):
                total += await self.write(batch[start:start + MAX_BATCH])
            return total
        by_id = {c.id: c for c in batch}
        if self._keep_clicks and self._dialect in ("sqlite", "postgresql"):
            try:
                return await (self._write_sqlite(by_id) if self._dialect == "sqlite"
                              else self._write_postgres(by_id))
            except _Redelivered:
                pass  # some clicks are stored already: the exact path finds out which
        return await self._write_exact(by_id)

    async def _write_exact(self, by_id: dict[str, Click]) -> int:
        """Portable: one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id."""
        async with transaction(self._engine) as conn:
            if self._keep_clicks:
                # SQLAlchemy's "insertmanyvalues": one statement, the rows in one VALUES list.
                result = await conn.execute(self._insert_clicks, [_row(c) for c in by_id.values()])
                new = [by_id[row[0]] for row in result]
            else:  # click tracking off: only the visit counters (no ids kept to dedupe on)
                new = list(by_id.values())
            counts = _counts(new)
            if counts:
                shard = random.randrange(self._shards)
                await conn.execute(self._add_counts, [
                    {"code": code, "shard": shard, "clicks": n} for code, n in counts
                ])
        return len(new)

    async def _write_sqlite(self, by_id: dict[str, Click]) -> int:
        """The common case on SQLite, without SQLAlchemy's per-parameter work: multi-row INSERTs
        (of up to MAX_BATCH rows) through the driver, in one transaction. Their row counts tell
        whether every click was new; if not (a redelivered batch), the transaction is rolled
        back and `_write_exact` runs."""
        ts = _sqlite_time if self._ts_is_text else self._ts
        values: Iterable[Click] = by_id.values()
        if self._large:
            values = sorted(values, key=_BY_CODE_AND_TIME)
        rows = [(c.id, c.code, ts(c.at), c.referrer_host, c.referrer,
                 c.user_agent, c.browser, c.os, c.device, int(c.is_bot), c.bot_reason, c.ip,
                 c.country) for c in values]
        async with transaction(self._engine) as conn:
            parts: list[tuple[str, Any]]
            if self._large:
                # The click-writer process: nothing else runs in it, so the GIL released and
                # taken again per row costs nothing, and executemany spares building one
                # flat tuple of every value.
                await conn.exec_driver_sql(f"PRAGMA cache_size=-{LARGE_BATCH_CACHE_KIB}")
                parts = [(_sqlite_insert(1), rows)]
            else:
                # One multi-row INSERT per MAX_BATCH rows (one step in SQLite's C code, one
                # release of the GIL), its text cached per size by the driver's statement cache.
                parts = [(_sqlite_insert(len(part)), tuple(v for row in part for v in row))
                         for part in (rows[i:i + MAX_BATCH] for i in range(0, len(rows), MAX_BATCH))]
            stored = 0
            for statement, params in parts:
                stored += (await conn.exec_driver_sql(statement, params)).rowcount
            if stored != len(rows):
                raise _Redelivered
            counts = _counts(by_id.values())
            if counts:
                shard = random.randrange(self._shards)
                await conn.exec_driver_sql(_SQLITE_COUNT, [(code, shard, n) for code, n in counts])
        return len(rows)

    async def _write_postgres(self, by_id: dict[str, Click]) -> int:
        """PostgreSQL: the batch as 13 arrays, `INSERT ... SELECT FROM unnest(...)`, through
        asyncpg directly (binary arrays: no per-row parameter processing)."""
        new: list[Click]
        values = list(by_id.values())
        columns = [
            [c.id for c in values], [c.code for c in values],
            [datetime.fromtimestamp(c.at, UTC) for c in values],
            [c.referrer_host for c in values], [c.referrer for c in values],
            [c.user_agent for c in values], [c.browser for c in values], [c.os for c in values],
            [c.device for c in values], [c.is_bot for c in values],
            [c.bot_reason for c in values], [c.ip for c in values], [c.country for c in values],
        ]
        async with transaction(self._engine) as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                # SQLAlchemy starts its asyncpg transaction lazily: start it before going around.
                await conn.exec_driver_sql("SELECT 1")
                inserted = await driver.fetch(_PG_INSERT, *columns)
                new = [by_id[r[0]] for r in inserted]
                counts = _counts(new)
                if counts:
                    await driver.execute(_PG_COUNT, [c for c, _ in counts],
                                         random.randrange(self._shards), [n for _, n in counts])
            except Exception as exc:
                _raise_unavailable(exc)
                raise
        return len(new)

    async def add_visits(self, counts: Sequence[tuple[str, int]]) -> None:
        """Add `n` visits to each `code` (the visit tally, click tracking off): one transaction,
        the counts added to ONE shard drawn for the call, `MAX_BATCH` links per statement."""
        merged: dict[str, int] = {}  # a code twice in one upsert would fail on PostgreSQL
        for code, n in counts:
            merged[code] = merged.get(code, 0) + n
        rows = sorted(item for item in merged.items() if item[1])  # one order: no deadlocks
        if not rows:
            return
        shard = random.randrange(self._shards)
        chunks = [rows[start:start + MAX_BATCH] for start in range(0, len(rows), MAX_BATCH)]
        async with transaction(self._engine) as conn:
            if self._dialect == "sqlite":
                for chunk in chunks:
                    await conn.exec_driver_sql(_SQLITE_COUNT,
                                               [(code, shard, n) for code, n in chunk])
            elif self._dialect == "postgresql":
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                try:
                    await conn.exec_driver_sql("SELECT 1")  # start SQLAlchemy's transaction
                    for chunk in chunks:
                        await driver.execute(_PG_COUNT, [c for c, _ in chunk], shard,
                                             [n for _, n in chunk])
                except Exception as exc:
                    _raise_unavailable(exc)
                    raise
            else:
                for chunk in chunks:
                    await conn.execute(self._add_counts, [
                        {"code": code, "shard": shard, "clicks": n} for code, n in chunk
                    ])

    async def count(self, code: str | None = None) -> int:
        """Clicks stored (for one code): for tests and the benchmark."""
        stmt = select(func.count()).select_from(clicks)
        if code is not None:
            stmt = stmt.where(clicks.c.code == code)
        async with transaction(self._engine) as conn:
            return int(await conn.scalar(stmt) or 0)


class _Redelivered(Exception):
    """Some clicks of the batch are already stored."""


_SQLITE_COLUMNS = ("INSERT INTO clicks (id, code, ts, referrer_host, referrer, user_agent, "
                   "browser, os, device, is_bot, bot_reason, ip, country) VALUES ")


@functools.lru_cache(maxsize=64)
def _sqlite_insert(rows: int) -> str:
    """`INSERT ... VALUES (?, ...), (?, ...) ... ON CONFLICT (id) DO NOTHING` for `rows` rows."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return _SQLITE_COLUMNS + values + " ON CONFLICT (id) DO NOTHING"


_SQLITE_COUNT = ("INSERT INTO link_counters (code, shard, clicks) VALUES (?, ?, ?) "
                 "ON CONFLICT (code, shard) DO UPDATE SET clicks = clicks + excluded.clicks")
_PG_INSERT = (
    "INSERT INTO clicks (id, code, ts, referrer_host, referrer, user_agent, browser, os, device, "
    "is_bot, bot_reason, ip, country) SELECT * FROM unnest($1::varchar[], $2::varchar[], "
    "$3::timestamptz[], $4::varchar[], $5::varchar[], $6::varchar[], $7::varchar[], "
    "$8::varchar[], $9::varchar[], $10::boolean[], $11::varchar[], $12::varchar[], "
    "$13::varchar[]) ON CONFLICT (id) DO NOTHING RETURNING id"
)
_PG_COUNT = (
    "INSERT INTO link_counters (code, shard, clicks) SELECT code, $2, n "
    "FROM unnest($1::varchar[], $3::bigint[]) AS t(code, n) "
    "ON CONFLICT (code, shard) DO UPDATE SET clicks = link_counters.clicks + excluded.clicks"
)


_SECONDS: dict[int, str] = {}


def _sqlite_time(at: float) -> str:
    """`at` (seconds since the epoch) as SQLAlchemy stores a UTC DATETIME on SQLite:
    `YYYY-MM-DD HH:MM:SS.ffffff`. The microseconds are rounded as `datetime.fromtimestamp`
    rounds them (half to even, carried into the next second); the date and time to the second
    come from a small cache (clicks arrive in time order)."""
    fraction, whole = math.modf(at)
    second = int(whole)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        second += 1
        micro -= 1_000_000
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%d %H:%M:%S")
    return f"{prefix}.{micro:06d}"


_BY_CODE_AND_TIME = attrgetter("code", "at")


def _counts(new: Iterable[Click]) -> list[tuple[str, int]]:
    """Visits to add per link, in one order (code) so concurrent upserts cannot deadlock."""
    return sorted(Counter(c.code for c in new if c.counted).items())


def _raise_unavailable(exc: Exception) -> None:
    """asyncpg's own errors, met when going around SQLAlchemy: connection trouble is a 503."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, (OSError, TimeoutError)) or type(exc).__name__ in (
            "ConnectionDoesNotExistError", "InterfaceError", "InternalClientError") or (
            isinstance(sqlstate, str) and sqlstate.startswith(("08", "53", "57"))):
        raise StorageUnavailable("the database is unavailable; try again shortly") from exc


def _row(c: Click) -> dict[str, Any]:
    return {
        "id": c.id, "code": c.code, "ts": datetime.fromtimestamp(c.at, UTC),
        "referrer_host": c.referrer_host, "referrer": c.referrer, "user_agent": c.user_agent,
        "browser": c.browser, "os": c.os, "device": c.device, "is_bot": c.is_bot,
        "bot_reason": c.bot_reason, "ip": c.ip, "country": c.country,
    }
