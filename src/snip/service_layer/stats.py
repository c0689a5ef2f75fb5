"""Click statistics and retention: read raw clicks plus daily rollups, purge old clicks into rollups.

Stats count recorded clicks (`clicks` while they are young, `click_daily` once purged), so they
exist only while click tracking is on; a link's `visits` counts every redirect (see design.md).
Every read names its link through the link service, so a link the actor may not see answers
exactly as an unknown code does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

from snip.domain.accounts import Actor
from snip.domain.errors import Forbidden, LinkNotFound, StorageUnavailable
from snip.domain.links import as_utc
from snip.service_layer.links import LinkService

log = logging.getLogger(__name__)

Interval = Literal["hour", "day"]
STEP: Final[dict[str, timedelta]] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_RANGE: Final = timedelta(days=30)
MAX_BUCKETS: Final = 3000  # e.g. 125 days by hour, 8 years by day
TOP: Final = 10
MAX_PAGE: Final = 1000
DIMENSIONS: Final = ("referrer", "browser", "os", "device", "country")
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)


class InvalidQuery(ValueError):
    """A stats or clicks query is out of bounds; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC range [start, end) cut into whole `interval` buckets."""

    start: datetime
    end: datetime
    interval: Interval

    def buckets(self) -> list[datetime]:
        step, at, out = STEP[self.interval], self.start, []
        while at < self.end:
            out.append(at)
            at += step
        return out


@dataclass(frozen=True, slots=True)
class Tally:
    value: str
    humans: int
    bots: int

    @property
    def total(self) -> int:
        return self.humans + self.bots


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    humans: int
    bots: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts over a window. `top` maps a dimension (and `link` for the global view) to its top."""

    window: Window
    humans: int
    bots: int
    series: list[Bucket]
    top: dict[str, list[Tally]]

    @property
    def total(self) -> int:
        return self.humans + self.bots


@dataclass(frozen=True, slots=True)
class Click:
    """One raw click as stored."""

    id: str
    code: str
    ts: datetime
    referrer_host: str | None
    referrer: str | None
    user_agent: str | None
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool
    bot_reason: str | None
    ip: str | None
    country: str | None


CLICK_FIELDS: Final = tuple(Click.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of clicks (newest first) ends: the last click's time and id."""

    ts: datetime
    id: str


@dataclass(frozen=True, slots=True)
class ClickPage:
    items: list[Click]
    next: Cursor | None


@dataclass(slots=True)
class PurgeResult:
    days: list[str] = field(default_factory=list)
    clicks: int = 0


class ClickStatsStore(Protocol):
    """What the stats service needs from storage (adapters/sql/stats.py)."""

    async def series(self, code: str | None, window: Window) -> dict[datetime, tuple[int, int]]:
        """(humans, bots) per bucket start, raw clicks plus rolled-up days; empty buckets absent."""

    async def tops(self, code: str | None, dimensions: Sequence[str], window: Window,
                   limit: int) -> dict[str, list[Tally]]:
        """Per dimension (or `link`), its `limit` most clicked values, most clicks first."""

    async def page(self, code: str, window: Window | None, after: Cursor | None, limit: int
                   ) -> list[Click]:
        """Raw clicks of a link, newest first, strictly after `after`."""

    async def purge_day(self, before: datetime) -> tuple[str, int] | None:
        """Roll up and delete the oldest day of raw clicks older than `before`, in one
        transaction. Returns (day, clicks moved), or None when no such day is left."""


def floor(at: datetime, interval: Interval) -> datetime:
    at = at.astimezone(UTC)
    if interval == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def ceil(at: datetime, interval: Interval) -> datetime:
    down = floor(at, interval)
    return down if down == at else down + STEP[interval]


def parse_time(name: str, value: str | None) -> datetime | None:
    """ISO 8601 (a date, or a date and time; no zone means UTC) → an aware UTC datetime."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidQuery(name, f"'{value}' is not an ISO 8601 date or time, "
                                 "e.g. 2026-11-01 or 2026-11-01T12:00:00Z") from None
    try:
        parsed = as_utc(parsed)
    except (OverflowError, ValueError):
        raise InvalidQuery(name, f"'{value}' is out of range") from None
    if not EARLIEST <= parsed <= LATEST:
        raise InvalidQuery(name, f"must be between {EARLIEST.year} and {LATEST.year}")
    return parsed


def window(start: datetime | None, end: datetime | None, interval: Interval,
           now: datetime) -> Window:
    """The window a query asks for: defaults to the last 30 days; widened to whole buckets."""
    if interval not in STEP:
        raise InvalidQuery("interval", "must be 'hour' or 'day'")
    if end is None:
        end = now if start is None or start < now else start + DEFAULT_RANGE
    if start is None:
        start = end - DEFAULT_RANGE
    if end <= start:
        raise InvalidQuery("to", "must be later than 'from'")
    start, end = floor(start, interval), ceil(end, interval)
    buckets = (end - start) // STEP[interval]
    if buckets > MAX_BUCKETS:
        raise InvalidQuery("to", f"this range has {buckets} {interval} buckets, more than "
                                 f"{MAX_BUCKETS}: narrow it or use interval=day")
    return Window(start, end, interval)


# The public names of the top lists, as the API and `snip clicks stats --json` show them.
TOP_NAMES: Final = {"referrer": "referrers", "browser": "browsers", "os": "os",
                    "device": "devices", "country": "countries", "link": "links"}


def as_json(stats: Stats, code: str | None) -> dict[str, Any]:
    """Stats as the JSON the API sends: totals at the top level, every bucket, top lists."""

    def tallies(items: list[Tally]) -> list[dict[str, Any]]:
        return [{"value": t.value, "total": t.total, "humans": t.humans, "bots": t.bots}
                for t in items]

    win = stats.window
    return {
        "code": code, "from": win.start.isoformat(), "to": win.end.isoformat(),
        "interval": win.interval, "total": stats.total, "humans": stats.humans,
        "bots": stats.bots,
        "series": [{"start": b.start.isoformat(), "total": b.humans + b.bots,
                    "humans": b.humans, "bots": b.bots} for b in stats.series],
        "top": {TOP_NAMES[d]: tallies(items) for d, items in stats.top.items()},
    }


class StatsService:
    """Reads stats and raw clicks for actors allowed to see them, and purges old clicks."""

    def __init__(self, store: ClickStatsStore, links: LinkService, *, retention_days: int,
                 purge_interval: float, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._links = links
        self.retention_days = retention_days
        self.purge_interval = purge_interval
        self._clock = clock or (lambda: datetime.now(UTC))
        self._task: asyncio.Task[None] | None = None

    def window(self, start: datetime | None, end: datetime | None,
               interval: Interval = "day") -> Window:
        return window(start, end, interval, self._clock())

    async def _visible(self, actor: Actor, code: str) -> None:
        link = await self._links.get(code)
        if not actor.sees(link.owner):
            # Exactly the answer for an unknown code: whether a code exists is not told.
            raise LinkNotFound(f"no link has the code '{code}'")

    async def link_stats(self, actor: Actor, code: str, win: Window) -> Stats:
        await self._visible(actor, code)
        return await self._stats(code, win, DIMENSIONS)

    async def global_stats(self, actor: Actor, win: Window) -> Stats:
        if not actor.is_admin:
            raise Forbidden("the summary across links is for admins")
        return await self._stats(None, win, ("link", *DIMENSIONS))

    async def _stats(self, code: str | None, win: Window, dimensions: Sequence[str]) -> Stats:
        counts = await self._store.series(code, win)
        series = [Bucket(at, *counts.get(at, (0, 0))) for at in win.buckets()]
        top = await self._store.tops(code, dimensions, win, TOP)
        return Stats(win, sum(b.humans for b in series), sum(b.bots for b in series), series,
                     top)

    async def clicks(self, actor: Actor, code: str, win: Window | None, after: Cursor | None,
                     limit: int) -> ClickPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_PAGE}")
        await self._visible(actor, code)
        items = await self._store.page(code, win, after, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return ClickPage(items, Cursor(items[-1].ts, items[-1].id) if more else None)

    async def export(self, actor: Actor, code: str, win: Window | None
                     ) -> AsyncIterator[list[Click]]:
        """Check access now, then hand back an iterator of pages (one query each) of all clicks."""
        await self._visible(actor, code)

        async def pages() -> AsyncIterator[list[Click]]:
            after: Cursor | None = None
            while True:
                items = await self._store.page(code, win, after, MAX_PAGE)
                if items:
                    yield items
                if len(items) < MAX_PAGE:
                    return
                after = Cursor(items[-1].ts, items[-1].id)

        return pages()

    # -- retention ---------------------------------------------------------------------------

    def cutoff(self, older_than_days: int, now: datetime | None = None) -> datetime:
        """Midnight UTC `older_than_days` days ago: whole days before it are purged."""
        return floor(now or self._clock(), "day") - timedelta(days=older_than_days)

    async def purge(self, older_than_days: int | None = None,
                    now: datetime | None = None) -> PurgeResult:
        """Move raw clicks of whole UTC days older than the retention into daily rollups.

        One transaction per day (rollup and delete together), oldest first; safe to run in
        several processes at once. Without `older_than_days`, the retention setting applies
        (0: keep forever, nothing is purged); `older_than_days=0` keeps nothing before today.
        """
        days = self.retention_days if older_than_days is None else older_than_days
        result = PurgeResult()
        if older_than_days is None and days == 0:
            return result
        if days < 0:
            raise InvalidQuery("older_than", "must be 0 or more days")
        before = self.cutoff(days, now)
        while (done := await self._store.purge_day(before)) is not None:
            day, moved = done
            result.days.append(day)
            result.clicks += moved
            log.info("purged raw clicks of %s into daily rollups: %d clicks", day, moved)
        return result

    def start_purging(self) -> None:
        """Purge on a schedule in this process (the server), if retention is on."""
        if self.retention_days > 0 and self._task is None:
            self._task = asyncio.create_task(self._purge_forever(), name="snip-click-purge")

    async def _purge_forever(self) -> None:
        # Start at a random point of the first interval, so processes started together (the
        # workers of one server, the hosts of one deployment) do not all purge at once.
        await asyncio.sleep(self.purge_interval * random.uniform(0.5, 1.0))
        while True:
            try:
                await self.purge()
            except StorageUnavailable:
                log.warning("click purge skipped: the database is unavailable")
            except Exception:
                log.exception("click purge failed; retrying at the next interval")
            await asyncio.sleep(self.purge_interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
