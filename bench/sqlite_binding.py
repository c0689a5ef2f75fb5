"""What binding a click row's values costs the sqlite3 module, with and without an adapter for None.

    .venv/bin/python bench/sqlite_binding.py [--rows 200000] [--rounds 5]

The sqlite3 module binds str, int, float and bytes at once, but first looks every other value,
None included, up as a possible adapter (a dictionary miss, then two failed attribute lookups).
snip registers an adapter for None (`snip.adapters.sql.engine`), found at the first step. This
times `executemany` of click rows as the click writer builds them (13 values; a browser's click
with no bot reason and no country: two NULLs; with no referrer either: four) into a table with
no index, so that what is timed is mostly the binding. The two ways alternate in one process
(the adapter is added to and removed from `sqlite3.adapters` between rounds). CPU µs per row,
median and min-max over the rounds. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROW = ("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "abc1234", "2026-11-21 14:00:00.123456",
       "news.example.com", "https://news.example.com/item?id=1",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/120.0.0.0 Safari/537.36", "Chrome", "Windows", "desktop", 0, None, "127.0.0.0", None)
NO_REFERRER = (*ROW[:3], None, None, *ROW[5:])
KEY = (type(None), sqlite3.PrepareProtocol)


def _null(_value: None) -> None:
    return None


def insert_us(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> float:
    db.execute("DELETE FROM t")
    start = time.process_time()
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    return (time.process_time() - start) / len(rows) * 1e6


def cell(values: list[float]) -> str:
    """Median (min–max)."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (id, code, ts, referrer_host, referrer, user_agent, browser, os, "
               "device, is_bot, bot_reason, ip, country)")
    loads = {"two NULLs": [ROW] * args.rows, "four NULLs": [NO_REFERRER] * args.rows}
    times: dict[tuple[str, str], list[float]] = {}
    for _round in range(args.rounds):
        for way in ("no adapter", "adapter for None"):
            if way == "no adapter":
                sqlite3.adapters.pop(KEY, None)
            else:
                sqlite3.register_adapter(type(None), _null)
            for load, rows in loads.items():
                times.setdefault((load, way), []).append(insert_us(db, rows))
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f}\n")
    print("| row | no adapter, µs/row | adapter for None, µs/row | saved, µs/row |")
    print("|---|---:|---:|---:|")
    for load in loads:
        plain, adapted = times[(load, "no adapter")], times[(load, "adapter for None")]
        saved = [a - b for a, b in zip(plain, adapted, strict=True)]  # round by round
        print(f"| {load} | {cell(plain)} | {cell(adapted)} | {cell(saved)} |")


if __name__ == "__main__":
    main()
