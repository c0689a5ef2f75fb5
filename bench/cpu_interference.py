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
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

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


def burner(name: str | None, tmp: Path) -> subprocess.Popen[bytes] | None:
    """The named burner, started at niceness 10 on CPU 1 (None: CPU 1 left alone)."""
    if name is None:
        return None
    proc = subprocess.Popen(["taskset", "-c", "1", "nice", "-n", "10", sys.executable, "-c",
                             BURNERS[name], str(tmp / "burn.db")])
    time.sleep(0.3)
    return proc


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
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
            proc = burner(cond, tmp)
            try:
                out = subprocess.run([sys.executable, "-c", LOOP], capture_output=True,
                                     text=True, check=True).stdout
            finally:
                stop(proc)
            work[cond].append(float(out))
    base = statistics.median(work[None])
    return ["| CPU 1 | loop's work per CPU-second on CPU 0, relative to CPU 1 idle |",
            "|---|---:|",
            *[f"| {c or 'idle'} | {spread(work[c], base)} |" for c in (None, "spin", "mem64")]]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def server_test(rounds: int, tmp: Path) -> list[str]:
    if shutil.which("wrk") is None:
        raise SystemExit("--server needs wrk (apt-get install wrk)")
    port = 18000 + random.randrange(2000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNIP_")}
    env.update(SNIP_DATABASE_URL=f"sqlite:///{tmp}/snip.db", SNIP_LOG_LEVEL="warning",
               SNIP_BASE_URL=f"http://127.0.0.1:{port}", SNIP_TRACK_CLICKS="false")
    snip = Path(sys.executable).parent / "snip"
    with open(tmp / "server.log", "wb") as log:
        srv = subprocess.Popen(["taskset", "-c", "0", str(snip), "serve", "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1"], env=env,
                               start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"snip did not answer; see {tmp / 'server.log'}")
        req = urllib.request.Request(f"{base}/shorten", data=b'{"url": "https://example.com/a"}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            url = f"{base}/r/{json.load(resp)['code']}"
        pids = process_tree(srv.pid)
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c200"]
        subprocess.run([*wrk, "-d3s", url], capture_output=True, check=True)  # warm-up
        conditions: list[str | None] = [None, "spin", "mem64", "sqlite"]
        us: dict[str | None, list[float]] = {c: [] for c in conditions}
        rps: dict[str | None, list[float]] = {c: [] for c in conditions}
        for _ in range(rounds):
            random.shuffle(conditions)
            for cond in conditions:
                proc = burner(cond, tmp)
                try:
                    t0 = cpu_ticks(pids)
                    out = subprocess.run([*wrk, "-d5s", url], capture_output=True, text=True,
                                         check=True).stdout
                    t1 = cpu_ticks(pids)
                finally:
                    stop(proc)
                n = int(next(ln for ln in out.splitlines() if "requests in" in ln).split()[0])
                us[cond].append((t1 - t0) / CLK_TCK / n * 1e6)
                rps[cond].append(n / 5)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=30)
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
    if os.cpu_count() is None or len(os.sched_getaffinity(0)) < 2:
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
