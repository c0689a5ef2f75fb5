"""Click stats queries on SQL: raw clicks plus daily rollups, grouped in the database; the purge.

The one dialect difference is how a timestamp is cut to its hour or day (`_bucket`). Every read
adds raw clicks and rollups in ONE statement (UNION ALL), so a purge committing in between can
never make a click count twice or not at all.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from snip.adapters.sql.repository import transaction
from snip.adapters.sql.schema import click_daily, clicks
from snip.domain.links import as_utc
from snip.service_layer.stats import CLICK_FIELDS, Click, Cursor, Tally, Window

# The raw column behind each rollup dimension (`link` is the global view's top links).
COLUMNS = {
    "referrer": clicks.c.referrer_host,
    "browser": clicks.c.browser,
    "os": clicks.c.os,
    "device": clicks.c.device,
    "country": clicks.c.country,
}
_HUMANS = func.sum(case((clicks.c.is_bot, 0), else_=1))
_BOTS = func.sum(case((clicks.c.is_bot, 1), else_=0))


class SqlClickStats:
    """`ClickStore` over the async engine the links use (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        # Connection failures become StorageUnavailable (503), as in every SQL adapter.
        self._begin = functools.partial(transaction, engine)

    def _bucket(self, interval: str) -> ColumnElement[Any]:
        """The bucket key of a raw click as text: 'YYYY-MM-DD' or 'YYYY-MM-DD HH' (UTC)."""
        # Constants, not bound parameters: GROUP BY must repeat the very same expression.
        if self._postgres:
            fmt = "'YYYY-MM-DD'" if interval == "day" else "'YYYY-MM-DD HH24'"
            return func.to_char(func.timezone(literal_column("'UTC'"), clicks.c.ts),
                                literal_column(fmt))
        # SQLite holds a DateTime as text 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's format, in
        # UTC): its prefix is the key, and cutting it costs less than strftime (bench/stats.py).
        return func.substr(clicks.c.ts, literal_column("1"),
                           literal_column("10" if interval == "day" else "13"))

    @staticmethod
    def _raw_where(code: str | None, win: Window) -> list[ColumnElement[bool]]:
        where = [clicks.c.ts >= win.start, clicks.c.ts < win.end]
        return where if code is None else [clicks.c.code == code, *where]

    @staticmethod
    def _daily_where(code: str | None, dimension: str, win: Window) -> list[ColumnElement[bool]]:
        # A rolled-up day counts when its midnight is inside the window.
        first = _ceil_day(win.start).date().isoformat()
        last = _ceil_day(win.end).date().isoformat()
        where = [click_daily.c.dimension == dimension, click_daily.c.day >= first,
                 click_daily.c.day < last]
        return where if code is None else [click_daily.c.code == code, *where]

    async def series(self, code: str | None, win: Window) -> dict[datetime, tuple[int, int]]:
        bucket = self._bucket(win.interval)
        raw = (select(bucket.label("b"), _HUMANS.label("h"), _BOTS.label("o"))
               .where(*self._raw_where(code, win)).group_by(bucket))
        day_key: ColumnElement[Any] = (click_daily.c.day if win.interval == "day"
                                       else click_daily.c.day + literal_column("' 00'"))
        daily = (select(day_key.label("b"), func.sum(click_daily.c.humans).label("h"),
                        func.sum(click_daily.c.bots).label("o"))
                 .where(*self._daily_where(code, "total", win)).group_by(click_daily.c.day))
        both = union_all(raw, daily).subquery()
        query = select(both.c.b, func.sum(both.c.h), func.sum(both.c.o)).group_by(both.c.b)
        out: dict[datetime, tuple[int, int]] = {}
        async with self._begin() as conn:
            for key, humans, bots in await conn.execute(query):
                at = datetime.fromisoformat(key if win.interval == "day" else key + ":00")
                old = out.get(at.replace(tzinfo=UTC), (0, 0))
                out[at.replace(tzinfo=UTC)] = (old[0] + int(humans), old[1] + int(bots))
        return out

    async def tops(self, code: str | None, dimensions: Sequence[str], win: Window, limit: int
                   ) -> dict[str, list[Tally]]:
        """Every top list in one statement: the window's raw clicks are read once (a
        MATERIALIZED CTE, so the costly part, fetching each click's row, is not repeated per
        dimension), grouped per dimension, added to the rollups, ranked with row_number()."""
        needed = [clicks.c.is_bot, *(COLUMNS[d] for d in dimensions if d != "link")]
        if "link" in dimensions:
            needed.append(clicks.c.code)
        raw = (select(*needed).where(*self._raw_where(code, win))
               .cte("raw").prefix_with("MATERIALIZED"))
        humans = func.sum(case((raw.c.is_bot, 0), else_=1))
        bots = func.sum(case((raw.c.is_bot, 1), else_=0))
        parts: list[Select[Any]] = []
        for dimension in dimensions:
            value = raw.c.code if dimension == "link" else raw.c[COLUMNS[dimension].key]
            parts.append(select(literal(dimension).label("d"), value.label("v"),
                                humans.label("h"), bots.label("o"))
                         .where(value.is_not(None), value != "").group_by(value))
            rolled = "total" if dimension == "link" else dimension
            daily_value = click_daily.c.code if dimension == "link" else click_daily.c.value
            parts.append(select(literal(dimension).label("d"), daily_value.label("v"),
                                func.sum(click_daily.c.humans).label("h"),
                                func.sum(click_daily.c.bots).label("o"))
                         .where(*self._daily_where(code, rolled, win)).group_by(daily_value))
        both = union_all(*parts).subquery("both")
        summed = (select(both.c.d, both.c.v, func.sum(both.c.h).label("h"),
                         func.sum(both.c.o).label("o"))
                  .group_by(both.c.d, both.c.v).subquery("summed"))
        rank = func.row_number().over(partition_by=summed.c.d,
                                      order_by=((summed.c.h + summed.c.o).desc(), summed.c.v))
        ranked = select(summed, rank.label("n")).subquery("ranked")
        query = (select(ranked.c.d, ranked.c.v, ranked.c.h, ranked.c.o)
                 .where(ranked.c.n <= limit).order_by(ranked.c.d, ranked.c.n))
        out: dict[str, list[Tally]] = {d: [] for d in dimensions}
        async with self._begin() as conn:
            for dimension, value, h, b in await conn.execute(query):
                out[dimension].append(Tally(str(value), int(h), int(b)))
        return out

    async def page(self, code: str, win: Window | None, after: Cursor | None, limit: int
                   ) -> list[Click]:
        query = select(*(clicks.c[f] for f in CLICK_FIELDS)).where(clicks.c.code == code)
        if win is not None:
            query = query.where(clicks.c.ts >= win.start, clicks.c.ts < win.end)
        if after is not None:
            # `ts <= t` first: a plain range on ix_clicks_code_ts, walked in order, so a deep
            # page stops after `limit` rows (an OR alone makes SQLite sort every older click).
            query = query.where(clicks.c.ts <= after.ts,
                                or_(clicks.c.ts < after.ts, clicks.c.id < after.id))
        query = query.order_by(clicks.c.ts.desc(), clicks.c.id.desc()).limit(limit)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Click(**{**row, "ts": as_utc(row["ts"]), "is_bot": bool(row["is_bot"])})
                for row in rows]

    async def purge_day(self, before: datetime) -> tuple[str, int] | None:
        async with self._begin() as conn:
            oldest = await conn.scalar(select(func.min(clicks.c.ts)).where(clicks.c.ts < before))
            if oldest is None:
                return None
            start = as_utc(oldest).replace(hour=0, minute=0, second=0, microsecond=0)
            end = min(start + timedelta(days=1), before)
            day = start.date().isoformat()
            in_day = and_(clicks.c.ts >= start, clicks.c.ts < end)
            if self._postgres:
                # One statement: exactly the rows this DELETE removed are rolled up. A second
                # purger running at the same time waits on the row locks, then finds them gone.
                gone = (delete(clicks).where(in_day)
                        .returning(*(clicks.c[f] for f in ("code", "is_bot", *_RAW)))
                        .cte("gone"))
                rollup = _upsert(postgresql.insert(click_daily), _rollups(gone, day))
                moved = await conn.scalar(
                    select(func.count()).select_from(gone)
                    .add_cte(rollup.cte("rolled")))
            else:
                # SQLite: take the database's one write lock now, until COMMIT, so no click
                # can arrive or leave between the rollup and the delete, and a second purger
                # waits, then finds the day gone. Explicitly: Python's sqlite3 opens a
                # transaction only before a statement that starts with INSERT/UPDATE/DELETE,
                # and the rollup starts with WITH: it would run (and commit) on its own.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                # The day's clicks are read once (a MATERIALIZED CTE), then grouped six times.
                day_clicks = (select(*(clicks.c[f] for f in ("code", "is_bot", *_RAW)))
                              .where(in_day).cte("day_clicks").prefix_with("MATERIALIZED"))
                await conn.execute(_upsert(sqlite.insert(click_daily),
                                           _rollups(day_clicks, day)))
                moved = (await conn.execute(delete(clicks).where(in_day))).rowcount
        return day, int(moved or 0)


_RAW = tuple(c.key for c in COLUMNS.values())


def _rollups(source: Any, day: str) -> Select[Any]:
    """The rollup rows of one day's clicks in `source`: total, then one per dimension value."""
    humans = func.sum(case((source.c.is_bot, 0), else_=1))
    bots = func.sum(case((source.c.is_bot, 1), else_=0))
    parts = [select(source.c.code, literal(day), literal("total"), literal(""), humans, bots)
             .group_by(source.c.code)]
    for dimension, column in COLUMNS.items():
        value = source.c[column.key]
        parts.append(
            select(source.c.code, literal(day), literal(dimension), value, humans, bots)
            .where(value.is_not(None), value != "")
            .group_by(source.c.code, value)
        )
    return union_all(*parts)  # type: ignore[return-value]


def _upsert(insert: Any, rows: Any) -> Any:
    statement = insert.from_select(
        ["code", "day", "dimension", "value", "humans", "bots"], rows)
    # A day purged twice (clicks that arrived late) adds to its rollups.
    return statement.on_conflict_do_update(
        index_elements=["code", "day", "dimension", "value"],
        set_={"humans": click_daily.c.humans + statement.excluded.humans,
              "bots": click_daily.c.bots + statement.excluded.bots},
    )


def _ceil_day(at: datetime) -> datetime:
    down = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return down if down == at else down + timedelta(days=1)
