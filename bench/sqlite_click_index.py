"""What one click row costs SQLite, by index: why the embedded click writer is dear.

    .venv/bin/python bench/sqlite_click_index.py [--rows 100000] [--batch 500]
    .venv/bin/python bench/sqlite_click_index.py --batch 20000 --sorted --cache-kib 65536
        (the click-writer process's way: large batches sorted by (code, time), a 64 MiB cache)

Plain `sqlite3` (no snip code), the `clicks` table of migration 0004 in WAL mode with
`synchronous=NORMAL`, rows inserted in batches of `--batch` in one transaction each
(`executemany ... ON CONFLICT (id) DO NOTHING`), times increasing as in real traffic. For each
index set and for clicks on one link or spread over 10,000 links, two consecutive rounds of
`--rows` rows: CPU µs per row, excluding the time to build the rows. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
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


def measure(path: Path, indexes: list[str], spread: bool, total: int, batch: int,
            sort: bool = False, cache_kib: int | None = None, rounds: int = 2) -> list[float]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if cache_kib:
        db.execute(f"PRAGMA cache_size=-{cache_kib}")
    db.execute(SCHEMA)
    for statement in indexes:
        db.execute(statement)
    clock = [datetime(2026, 11, 21, tzinfo=UTC)]
    results = []
    for _round in range(rounds):
        building = 0.0
        start = time.process_time()
        for _ in range(total // batch):
            t = time.process_time()
            batch_rows = rows(batch, clock, spread)
            if sort:
                batch_rows.sort(key=lambda row: (row[1], row[2]))
            building += time.process_time() - t
            db.execute("BEGIN")
            db.executemany(INSERT, batch_rows)
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
    args = parser.parse_args()
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, SQLite {sqlite3.sqlite_version}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(f"| indexes | clicks on one link, µs/row (round 1 → {args.rounds}) "
          f"| clicks over 10,000 links, µs/row (round 1 → {args.rounds}) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clicks.db"
        for name, indexes in (("primary key only", []), ("+ (ts)", [TS]),
                              ("+ (code, ts)", [CODE_TS]), ("both (the schema)", [CODE_TS, TS])):
            cells = []
            for spread in (False, True):
                costs = measure(path, indexes, spread, args.rows, args.batch, args.sorted,
                                args.cache_kib, args.rounds)
                cells.append(" → ".join(f"{c:.1f}" for c in costs))
            print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
