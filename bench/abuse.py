"""What the abuse defences cost: the blocklist check at creation, and blocking a busy domain.

    .venv/bin/python bench/abuse.py [--quick] [--redis redis://127.0.0.1:6379/0]

1. Creation through LinkService on SQLite, with the blocklist check (one primary-key lookup
   of the host's suffixes) and without any checker, alternating in one run: median µs per
   link and the ratio. 100,000 domains are listed, so the lookup is not on an empty table.
2. Blocking one domain that N links point to (half of them on subdomains) among 4N others:
   the UPDATE over the host_key range plus forgetting every code in every cache tier; the
   same with Redis (DEL + PUBLISH per code) when --redis is given.
3. The in-memory check (`BlocklistChecker.check_now`, for bulk imports): ns per URL.

Prints Markdown tables with the command, date and machine. The machine is shared and noisy:
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from snip.adapters.sql.schema import links as links_table
from snip.bootstrap import running
from snip.config import Settings
from snip.domain.accounts import Actor
from snip.domain.checks import Blocklist, host_key, host_of
from snip.service_layer.checks import BlocklistChecker
from snip.service_layer.links import NewLink

SYSTEM = Actor.system()


async def seed(snip: object, urls: list[str]) -> None:
    engine = snip.engine  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    rows = [{"code": secrets.token_urlsafe(8)[:10], "url": u, "url_digest": "-",
             "host_key": host_key(host_of(u)), "created_at": now, "updated_at": now}
            for u in urls]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(links_table), rows[start:start + 5000])


async def creation(tmp: Path, n: int, rounds: int) -> list[tuple[str, float]]:
    settings = Settings(database_url=f"sqlite:///{tmp / 'create.db'}", metrics_enabled=False,
                        blocklist_refresh=0)
    async with running(settings) as snip:
        assert snip.abuse is not None
        await snip.abuse.block([f"d{i}.example" for i in range(100_000)], actor=SYSTEM)
        chain = snip.links.checker
        timings: dict[str, list[float]] = {"blocklist check": [], "no checker": []}
        for r in range(rounds):
            for label in ("blocklist check", "no checker"):
                snip.links.checker = chain if label == "blocklist check" else None
                start = time.perf_counter()
                for i in range(n):
                    await snip.links.create(NewLink(url=f"https://ok{r}-{i}.example/{label[0]}"))
                timings[label].append((time.perf_counter() - start) / n * 1e6)
        snip.links.checker = chain
    return [(label, statistics.median(values)) for label, values in timings.items()]


async def blocking(tmp: Path, n: int, redis: str | None) -> float:
    name = f"block-{n}-{'redis' if redis else 'local'}.db"
    settings = Settings(database_url=f"sqlite:///{tmp / name}", metrics_enabled=False,
                        redis_url=redis, redis_prefix=f"bench-{secrets.token_hex(3)}:",
                        blocklist_refresh=0)
    async with running(settings) as snip:
        assert snip.abuse is not None
        urls = [f"https://{'www.' if i % 2 else ''}busy.example/{i}" for i in range(n)]
        urls += [f"https://other{i % 1000}.example/{i}" for i in range(4 * n)]
        await seed(snip, urls)
        start = time.perf_counter()
        change = await snip.abuse.block(["busy.example"], actor=SYSTEM)
        elapsed = time.perf_counter() - start
        assert len(change.links) == n, len(change.links)
    return elapsed


def in_memory(n: int) -> float:
    checker = BlocklistChecker(Blocklist(frozenset(f"d{i}.example" for i in range(100_000))))
    urls = [f"https://a.b.ok{i}.example/x" for i in range(n)]
    start = time.perf_counter()
    for url in urls:
        checker.check_now(url)
    return (time.perf_counter() - start) / n * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redis", default=None, help="also block with Redis caches")
    args = parser.parse_args()
    n, rounds = (200, 3) if args.quick else (1000, 5)
    sizes = (1000,) if args.quick else (1000, 10_000)
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}` — "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"Python {platform.python_version()}, SQLite\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(creation(Path(tmp), n, rounds))
        base = dict(rows)["no checker"]
        print(f"| creation ({n} links × {rounds} rounds, median) | µs per link | ratio |")
        print("|---|---:|---:|")
        for label, value in rows:
            print(f"| {label} | {value:.0f} | {value / base:.2f} |")
        print("\n| blocking one domain | links blocked | seconds |")
        print("|---|---:|---:|")
        for size in sizes:
            for redis in (None, args.redis) if args.redis else (None,):
                seconds = asyncio.run(blocking(Path(tmp), size, redis))
                where = "with Redis" if redis else "in-process cache only"
                print(f"| {where} | {size} | {seconds:.2f} |")
    print(f"\nin-memory check (`check_now`, 100,000 listed): {in_memory(100_000):.0f} ns per URL")


if __name__ == "__main__":
    main()
