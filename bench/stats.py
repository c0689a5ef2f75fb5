#!/usr/bin/env python3
"""Stats queries: what reading click stats costs on SQLite and PostgreSQL with N raw clicks.

Seeds N clicks (default 1,000,000) over the last --days days (default 90) straight into the
`clicks` table of a fresh database (a SQLite file; a PostgreSQL database `snip_bench_<hex>`,
dropped at the end): one hot link gets --hot-share of them (default 10%), the rest spread over
--links links; 5% are bots; referrer hosts, browsers, OSes, devices and countries are drawn
from small skewed sets, like real traffic. Then, through snip's StatsService (the code the API
runs; no HTTP), it times each query --runs times (median, min-max):

* link/30d/day     the hot link's stats: series + 5 top lists over the last 30 days, by day
* link/90d/hour    the hot link over 90 days by hour (~2,160 buckets)
* cold/30d/day     a link with ~900 clicks
* global/30d/day   the admin summary over every link (+ top links)
* page/first       the first page (100) of the hot link's raw clicks; page/deep: page 50
* export           the hot link's CSV export pages (every click in 90 days), clicks/s

Then it purges every day older than --purge-older days (default 30; one transaction per day)
and reports the purge rate, and times the stats queries again, now reading rollups for the
purged days (they must give the same totals: checked).

Run:  .venv/bin/python bench/stats.py                       (1M clicks, both backends)
      .venv/bin/python bench/stats.py --clicks 100000 --backends sqlite
Needs PostgreSQL at --pg-url (a database to connect to for CREATE/DROP DATABASE) for the
postgresql backend. Exit status 0, or 2 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from snip.adapters.sql.schema import clicks  # noqa: E402
from snip.bootstrap import Snip, running  # noqa: E402
from snip.config import Settings  # noqa: E402
from snip.domain.accounts import Actor  # noqa: E402
from snip.service_layer.links import NewLink  # noqa: E402
from snip.service_layer.stats import Cursor, Stats  # noqa: E402

REFERRERS = ["t.co", "news.ycombinator.com", "www.google.com", "lobste.rs", "www.reddit.com",
             "duckduckgo.com", "mail.example.com", "bing.com", "example.org", "blog.example"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Samsung Internet", "Opera"]
OSES = ["Windows", "Android", "iOS", "Mac OS X", "Linux", "ChromeOS"]
DEVICES = ["desktop", "mobile", "tablet"]
COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "NL", "SE", "PL", "ES"]
SYSTEM = Actor.system()


def skewed(rng: random.Random, items: list[str]) -> str | None:
    """Zipf-ish: the first items are far more common; sometimes none (no referrer, unknown)."""
    if rng.random() < 0.2:
        return None
    return items[min(int(rng.expovariate(0.6)), len(items) - 1)]


def rows(rng: random.Random, n: int, codes: list[str], hot_share: float, days: int,
         now: datetime) -> list[dict[str, Any]]:
    span = days * 86400
    out = []
    for _ in range(n):
        bot = rng.random() < 0.05
        out.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "code": codes[0] if rng.random() < hot_share else rng.choice(codes[1:]),
            "ts": now - timedelta(seconds=rng.random() * span),
            "referrer_host": skewed(rng, REFERRERS), "referrer": None,
            "user_agent": "Mozilla/5.0 (bench)", "browser": "Googlebot" if bot else
            skewed(rng, BROWSERS), "os": skewed(rng, OSES),
            "device": "bot" if bot else skewed(rng, DEVICES), "is_bot": bot,
            "bot_reason": "user-agent" if bot else None, "ip": "192.0.2.0",
            "country": skewed(rng, COUNTRIES),
        })
    return out


async def seed(snip: Snip, args: argparse.Namespace, codes: list[str], now: datetime) -> float:
    started = time.perf_counter()
    rng = random.Random(args.seed)
    for code in codes:
        await snip.links.create(NewLink(url=f"https://example.com/{code}", code=code))
    chunk = 50_000
    for done in range(0, args.clicks, chunk):
        data = rows(rng, min(chunk, args.clicks - done), codes, args.hot_share, args.days, now)
        if snip.engine.dialect.name == "postgresql":
            async with snip.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                columns = list(data[0])
                await driver.copy_records_to_table(
                    "clicks", records=[tuple(r[c] for c in columns) for r in data],
                    columns=columns)
                await conn.commit()
        else:
            async with snip.engine.begin() as conn:
                await conn.execute(insert(clicks), data)
    async with snip.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


async def timed(runs: int, query: Callable[[], Awaitable[Any]]) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await query()
        times.append(time.perf_counter() - started)
    return times, result


def fmt(times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"{statistics.median(ms):,.1f} ms ({min(ms):,.1f}-{max(ms):,.1f})"


async def queries(snip: Snip, runs: int, hot: str, cold: str, now: datetime
                  ) -> dict[str, tuple[list[float], Any]]:
    svc = snip.stats
    assert svc is not None
    d30 = svc.window(now - timedelta(days=30), now, "day")
    # From a midnight: a rolled-up day counts when its midnight is inside the window.
    h90 = svc.window((now - timedelta(days=89)).replace(hour=0, minute=0, second=0), now, "hour")
    out: dict[str, tuple[list[float], Any]] = {}
    out["link/30d/day"] = await timed(runs, lambda: svc.link_stats(SYSTEM, hot, d30))
    out["link/90d/hour"] = await timed(runs, lambda: svc.link_stats(SYSTEM, hot, h90))
    out["cold/30d/day"] = await timed(runs, lambda: svc.link_stats(SYSTEM, cold, d30))
    out["global/30d/day"] = await timed(runs, lambda: svc.global_stats(SYSTEM, d30))
    out["page/first"] = await timed(runs, lambda: svc.clicks(SYSTEM, hot, None, None, 100))

    async def deep() -> Any:
        after: Cursor | None = None
        for _ in range(50):
            page = await svc.clicks(SYSTEM, hot, None, after, 100)
            after = page.next
        return page

    times, page = await timed(1, deep)
    out["page/deep (50 pages)"] = (times, page)
    return out


async def export(snip: Snip, hot: str) -> tuple[float, int]:
    assert snip.stats is not None
    started, n = time.perf_counter(), 0
    async for page in await snip.stats.export(SYSTEM, hot, None):
        n += len(page)
    return time.perf_counter() - started, n


def totals(stats: Stats) -> tuple[int, int, list[tuple[str, int]]]:
    return stats.humans, stats.bots, [(t.value, t.total) for t in stats.top["browser"]]


async def bench(backend: str, url: str, args: argparse.Namespace) -> bool:
    settings = Settings(database_url=url, db_statement_timeout=120.0, metrics_enabled=False,
                        click_retention_days=0)
    now = datetime.now(UTC).replace(microsecond=0)
    codes = ["hot", "cold", *(f"l{i}" for i in range(args.links))]
    ok = True
    async with running(settings) as snip:
        assert snip.stats is not None
        seeded = await seed(snip, args, codes, now)
        print(f"\n### {backend}: {args.clicks:,} clicks, {len(codes):,} links "
              f"(seeded in {seeded:.1f} s)\n")
        before = await queries(snip, args.runs, "hot", "cold", now)
        seconds, n = await export(snip, "hot")
        started = time.perf_counter()
        purged = await snip.stats.purge(args.purge_older, now)
        purge_s = time.perf_counter() - started
        after = await queries(snip, args.runs, "hot", "cold", now)
        print("| query | raw clicks only | after purge (rollups for older days) |")
        print("|---|---|---|")
        for name in before:
            print(f"| {name} | {fmt(before[name][0])} | {fmt(after[name][0])} |")
            if name.startswith(("link", "cold", "global")):
                same = totals(before[name][1]) == totals(after[name][1])
                ok &= same
                if not same:
                    print(f"| CHECK FAILED: {name} differs after the purge | | |")
        hot_total = before["link/30d/day"][1].total
        print(f"\nHot link: {hot_total:,} clicks in 30 days. Export: {n:,} clicks in "
              f"{seconds:.2f} s ({n / seconds:,.0f} clicks/s, pages of 1,000).")
        print(f"Purge: {purged.clicks:,} clicks in {len(purged.days)} days in {purge_s:.1f} s "
              f"({purged.clicks / max(purge_s, 1e-9):,.0f} clicks/s, "
              f"{purge_s / max(len(purged.days), 1) * 1000:,.0f} ms per day).")
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--hot-share", type=float, default=0.1)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--purge-older", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get(
        "SNIP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    print(f"# bench/stats.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.platform()}")
    ok = True
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                ok &= await bench("sqlite", f"sqlite:///{tmp}/bench.db", args)
        else:
            ok &= await bench_postgres(args)
    return 0 if ok else 2


async def bench_postgres(args: argparse.Namespace) -> bool:
    import asyncpg  # snip's own PostgreSQL driver

    admin = make_url(args.pg_url)
    name = f"snip_bench_{uuid.uuid4().hex[:10]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        return await bench("postgresql", admin.set(database=name).render_as_string(
            hide_password=False), args)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
