"""What one click row costs SQLite, by index: why the embedded click writer is dear.

    .venv/bin/python bench/sqlite_click_index.py [--rows 100000] [--batch 500]
    .venv/bin/python bench/sqlite_click_index.py --batch 20000 --sorted --cache-kib 65536
        (the click-writer process's way: large batches sorted by (code, time), a 64 MiB cache)
    .venv/bin/python bench/sqlite_click_index.py --batch 20000 --sorted --cache-kib 65536 \
        --prefill 1000000 --pragma page_size=1024
        (a table that already holds a million clicks; a SQLite setting tried on top)

Plain `sqlite3` (no snip code), the `clicks` table of migration 0004 in WAL mode with
`synchronous=NORMAL`, rows inserted in batches of `--batch` in one transaction each
(`executemany ... ON CONFLICT (id) DO NOTHING`), times increasing as in real traffic. For each
index set and for clicks on one link or spread over 10,000 links, two consecutive rounds of
`--rows` rows: CPU µs per row, excluding the time to build the rows. Prints a Markdown table.
`--prefill` rows are written the same way, untimed, before the first round. The last layout,
"clustered", is not snip's schema: the table itself ordered by (code, id) (`WITHOUT ROWID`, no
other index), one B-tree per click instead of four, to show what that layout would cost.
`--pragma NAME=VALUE` (repeatable) sets a SQLite setting on each fresh database before anything
else (`page_size`, `mmap_size`, `wal_autocheckpoint`, ...).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uuid_utils

SCHEMA = (
    "CREATE TABLE clicks (id VARCHAR(36) NOT NULL, code VARCHAR(64) NOT NULL, "
    "ts DATETIME NOT NULL, referrer_host VARCHAR(255), referrer VARCHAR(500), "
    "user_agent VARCHAR(500), browser VARCHAR(64), os VARCHAR(64), device VARCHAR(16), "
    "is_bot BOOLEAN DEFAULT 0 NOT NULL, bot_reason VARCHAR(32), ip VARCHAR(45), "
    "country VARCHAR(2), CONSTRAINT pk_clicks PRIMARY KEY (id))"
)
INSERT = ("INSERT INTO clicks (id, code, ts, referrer_host, referrer, user_agent, browser, os, "
          "device, is_bot, bot_reason, ip, country) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
          "ON CONFLICT (id) DO NOTHING")
CLUSTERED = SCHEMA.replace("PRIMARY KEY (id))", "PRIMARY KEY (code, id)) WITHOUT ROWID")
CODE_TS = "CREATE INDEX ix_clicks_code_ts ON clicks (code, ts)"
TS = "CREATE INDEX ix_clicks_ts ON clicks (ts)"
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0 Safari/537.36")
CODES = [f"c{i:05d}" for i in range(10_000)]


def rows(n: int, clock: list[datetime], spread: bool) -> list[tuple[object, ...]]:
    out = []
    for _ in range(n):
        clock[0] += timedelta(microseconds=50)
        out.append((str(uuid_utils.uuid7()), random.choice(CODES) if spread else CODES[0],
                    clock[0].isoformat(" "), "news.example.com",
                    "https://news.example.com/item?id=1", UA, "Chrome", "Windows", "desktop", 0,
                    None, "192.0.2.0", None))
    return out


def batch_rows(n: int, clock: list[datetime], spread: bool, sort: bool
               ) -> list[tuple[object, ...]]:
    """`rows`, sorted by (code, time) if `sort`, as the click-writer process sorts a batch."""
    out = rows(n, clock, spread)
    if sort:
        out.sort(key=lambda row: (row[1], row[2]))
    return out


def measure(path: Path, indexes: list[str], spread: bool, total: int, batch: int,
            sort: bool = False, cache_kib: int | None = None, rounds: int = 2,
            prefill: int = 0, pragmas: Sequence[str] = (), schema: str = SCHEMA) -> list[float]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in pragmas:  # first: page_size only takes on an empty database
        db.execute(f"PRAGMA {pragma}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if cache_kib:
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
    db.execute(schema)
    for statement in indexes:
        db.execute(statement)
    clock = [datetime(2026, 11, 21, tzinfo=UTC)]
    insert = INSERT if schema == SCHEMA else INSERT.replace("(id) DO", "(code, id) DO")
    for _ in range(prefill // batch):
        db.execute("BEGIN")
        db.executemany(insert, batch_rows(batch, clock, spread, sort))
        db.execute("COMMIT")
    results = []
    for _round in range(rounds):
        building = 0.0
        start = time.process_time()
        for _ in range(total // batch):
            t = time.process_time()
            made = batch_rows(batch, clock, spread, sort)
            building += time.process_time() - t
            db.execute("BEGIN")
            db.executemany(insert, made)
            db.execute("COMMIT")
        results.append((time.process_time() - start - building) / total * 1e6)
    db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sorted", action="store_true",
                        help="sort each batch by (code, time) before inserting it")
    parser.add_argument("--cache-kib", type=int, default=None,
                        help="PRAGMA cache_size in KiB (default: SQLite's, 2 MiB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prefill", type=int, default=0,
                        help="rows written, untimed, before the first round")
    parser.add_argument("--pragma", action="append", default=[], metavar="NAME=VALUE",
                        help="a SQLite setting for each fresh database (repeatable)")
    args = parser.parse_args()
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, SQLite {sqlite3.sqlite_version}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"| indexes | clicks on one link, µs/row (round 1 → {args.rounds}) "
          f"| clicks over 10,000 links, µs/row (round 1 → {args.rounds}) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clicks.db"
        for name, schema, indexes in (
                ("primary key only", SCHEMA, []), ("+ (ts)", SCHEMA, [TS]),
                ("+ (code, ts)", SCHEMA, [CODE_TS]), ("both (the schema)", SCHEMA, [CODE_TS, TS]),
                ("clustered: (code, id) WITHOUT ROWID", CLUSTERED, [])):
            cells = []
            for spread in (False, True):
                costs = measure(path, indexes, spread, args.rows, args.batch, args.sorted,
                                args.cache_kib, args.rounds, args.prefill, args.pragma, schema)
                cells.append(" → ".join(f"{c:.1f}" for c in costs))
            print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
