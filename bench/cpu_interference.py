"""Does work on one CPU slow the other? Run it before trusting bench/redirect's on/off bar.

    .venv/bin/python bench/cpu_interference.py [--rounds 14] [--server --server-rounds 6]

bench/redirect's on/off bar puts the server on CPU 0 and wrk on CPU 1, and with click recording
on the click writer shares CPU 1 with wrk: CPU 1 is then about 95 % busy, against about 40 %
with recording off. On a VM whose two vCPUs are one physical core's two threads, or share a
power or frequency budget, that alone makes every redirect on CPU 0 dearer, whatever CPU 1
runs, and the bar then measures the host as much as snip.

- Always: a Python loop pinned to CPU 0 (dictionary lookups, 2 s a run) is timed as work per
  CPU-second, with CPU 1 idle and with a burner at niceness 10 on CPU 1: `spin` (an integer
  loop, no memory traffic) and `mem64` (copying 64 MiB buffers). Conditions alternate, round
  by round. 1.00 means CPU 1's work costs CPU 0 nothing.
- `--server`: the same burners, and `sqlite` (batches of 20,000 inserts into an indexed table,
  like the click writer's), beside `snip serve` with click recording off on CPU 0 under wrk
  (`-t1 -c200`, 5 s runs) on CPU 1: the server's CPU per redirect and its throughput. No snip
  click work runs in any condition. Needs wrk.
Prints the medians (min–max) with the command and the date.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

LOOP = """import os, time
os.sched_setaffinity(0, {0})
d = {i: str(i) for i in range(200000)}
t, w, n = time.process_time(), time.perf_counter(), 0
while time.perf_counter() - w < 2:
    for k in range(0, 200000, 7):
        n += len(d[k])
print(n / (time.process_time() - t))
"""
BURNERS = {
    "spin": "x = 0\nwhile True:\n    x += 1\n",
    "mem64": "b, c = bytearray(64 << 20), bytearray(64 << 20)\nwhile True:\n    c[:] = b\n",
    "sqlite": """import random, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("pragma cache_size=-65536")
db.execute("create table if not exists c (id integer primary key, code text, ts text, ua text)")
db.execute("create index if not exists c_code_ts on c (code, ts)")
i = 0
while True:
    rows = [(f"c{random.randrange(10000)}", f"2026-11-21T{i + j:012d}", "Mozilla/5.0")
            for j in range(20000)]
    i += 20000
    db.execute("begin")
    db.executemany("insert into c (code, ts, ua) values (?, ?, ?)", rows)
    db.execute("commit")
""",
}


@contextlib.contextmanager
def burning(name: str | None, tmp: Path) -> Iterator[None]:
    """The named burner running at niceness 10 on CPU 1 for the block (None: CPU 1 left
    alone)."""
    if name is None:
        yield
        return
    proc = subprocess.Popen(["taskset", "-c", "1", "nice", "-n", "10", sys.executable, "-c",
                             BURNERS[name], str(tmp / "burn.db")])
    try:
        time.sleep(0.3)
        yield
    finally:
        proc.kill()
        proc.wait()


def spread(values: list[float], base: float = 1.0, spec: str = ".2f") -> str:
    return (f"{statistics.median(values) / base:{spec}} "
            f"({min(values) / base:{spec}}–{max(values) / base:{spec}})")


def loop_test(rounds: int, tmp: Path) -> list[str]:
    conditions: list[str | None] = [None, "spin", "mem64"]
    work: dict[str | None, list[float]] = {c: [] for c in conditions}
    for _ in range(rounds):
        random.shuffle(conditions)
        for cond in conditions:
            with burning(cond, tmp):
                out = subprocess.run([sys.executable, "-c", LOOP], capture_output=True,
                                     text=True, check=True).stdout
            work[cond].append(float(out))
    base = statistics.median(work[None])
    return ["| CPU 1 | loop's work per CPU-second on CPU 0, relative to CPU 1 idle |",
            "|---|---:|",
            *[f"| {c or 'idle'} | {spread(work[c], base)} |" for c in (None, "spin", "mem64")]]


def redirect_bench() -> ModuleType:
    """bench/redirect as a module: its snip server (start, readiness, CPU of the serving
    process tree, stop) serves here too."""
    loader = importlib.machinery.SourceFileLoader("bench_redirect", str(ROOT / "bench" / "redirect"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def server_test(rounds: int, tmp: Path) -> list[str]:
    if shutil.which("wrk") is None:
        raise SystemExit("--server needs wrk (apt-get install wrk)")
    rb = redirect_bench()
    port = rb.free_port()
    srv = rb.snip_server("granian", port, f"sqlite:///{tmp}/snip.db", tmp, "0",
                         rb.Variant("off", {"SNIP_TRACK_CLICKS": "false"}))
    srv.start()
    try:
        srv.wait_ready("/healthz", lambda st: st == 200)
        base = f"http://127.0.0.1:{port}"
        req = urllib.request.Request(f"{base}/shorten", data=b'{"url": "https://example.com/a"}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            url = f"{base}/r/{json.load(resp)['code']}"
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c200"]
        subprocess.run([*wrk, "-d3s", url], capture_output=True, check=True)  # warm-up
        conditions: list[str | None] = [None, "spin", "mem64", "sqlite"]
        us: dict[str | None, list[float]] = {c: [] for c in conditions}
        rps: dict[str | None, list[float]] = {c: [] for c in conditions}
        for _ in range(rounds):
            random.shuffle(conditions)
            for cond in conditions:
                with burning(cond, tmp):
                    t0, _ = srv.cpu_ticks()
                    out = subprocess.run([*wrk, "-d5s", url], capture_output=True, text=True,
                                         check=True).stdout
                    t1, _ = srv.cpu_ticks()
                n = int(next(ln for ln in out.splitlines() if "requests in" in ln).split()[0])
                us[cond].append((t1 - t0) / rb.CLK_TCK / n * 1e6)
                rps[cond].append(n / 5)
    finally:
        srv.stop()
    return ["| CPU 1 (besides wrk) | server CPU, µs/redirect | requests/s |",
            "|---|---:|---:|",
            *[f"| {c or 'nothing'} | {spread(us[c], spec='.1f')} | {spread(rps[c], spec=',.0f')} |"
              for c in (None, "spin", "mem64", "sqlite")]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=14, help="rounds of the loop test")
    ap.add_argument("--server", action="store_true", help="also time snip serve under wrk")
    ap.add_argument("--server-rounds", type=int, default=6)
    a = ap.parse_args()
    if not {0, 1} <= os.sched_getaffinity(0):
        raise SystemExit("needs CPUs 0 and 1")
    with tempfile.TemporaryDirectory(prefix="snip-interference-") as d:
        tmp = Path(d)
        lines = [f"Command: `{' '.join(['bench/cpu_interference.py', *sys.argv[1:]])}`  ",
                 f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "", *loop_test(a.rounds, tmp)]
        if a.server:
            lines += ["", *server_test(a.server_rounds, tmp)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
