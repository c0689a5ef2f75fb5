#!/usr/bin/env python3
"""Import: `snip import` of N generated URLs from CSV into a fresh SQLite file, with validation.

A CSV of --rows URLs (default 1,000,000; columns url,title; hosts, paths, queries and titles
drawn from a seeded generator, ~1 % of rows invalid so the error path is exercised) is written
once. Each run makes a fresh SQLite database (`snip db upgrade`, not timed), then times
`python -m snip import FILE -q` as a user runs it: its wall time from start to exit, links/s
(rows read / wall time), and from os.wait4 the CPU time (user + system) of the command and
everything it waited for (the validation pool's workers) and its peak memory: ru_maxrss of
RUSAGE_CHILDREN, i.e. the largest single process of the tree (Linux reports the maximum, not
a sum). The peak of the tree's summed RSS is also sampled from /proc every 0.1 s. After the
last run the import is repeated on the same database, which must create nothing (the
idempotent re-run), and that is timed too.

Run:  python bench/import.py                 (1,000,000 rows, 3 runs; a few minutes)
      python bench/import.py --rows 200000 --runs 1 --workers 2
Needs snip importable (the script re-executes itself with ROOT/.venv/bin/python when it is
not), Linux /proc for the summed RSS. Standard library only. Exit status: 0 when the median
reaches --bar links/s (default 20,000), 1 when it does not, 2 when a check failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ensure_snip() -> None:
    try:
        import snip  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if not venv_python.exists() or Path(sys.executable) == venv_python:
            raise
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])


WORDS = ("news", "blog", "shop", "docs", "media", "story", "item", "guide", "review", "video",
         "2024", "sale", "help", "about", "team", "report", "api", "download", "event", "post")


def generate(path: Path, rows: int, seed: int = 42) -> int:
    """Write the CSV; return how many rows are invalid on purpose."""
    rng = random.Random(seed)
    invalid = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("url,title\n")
        for i in range(rows):
            if i % 97 == 13:
                invalid += 1
                f.write(f"notaurl-{i},broken\n")
                continue
            host = f"{rng.choice(WORDS)}{rng.randrange(20000)}.example.com"
            path_ = "/".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 5)))
            query = f"?id={i}&utm_source={rng.choice(WORDS)}" if rng.random() < 0.5 else ""
            title = f"{rng.choice(WORDS).title()} {i}" if rng.random() < 0.6 else ""
            f.write(f"https://{host}/{path_}/{i}{query},{title}\n")
    return invalid


def _tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of `pid` and its descendants (0 if /proc is unavailable)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def _cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` alone (0 if /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_import(csv_path: Path, env: dict[str, str], workers: int | None) -> dict[str, float]:
    args = [sys.executable, "-m", "snip", "import", str(csv_path), "-q"]
    if workers is not None:
        args += ["--workers", str(workers)]
    peak = [0]
    main_cpu = [0.0]
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            main_cpu[0] = max(main_cpu[0], _cpu_seconds(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"snip import exited {proc.returncode}: {err[-2000:]}")
    numbers = _summary(out)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "main_cpu": main_cpu[0],
            "maxrss_mib": usage.ru_maxrss / 1024, "tree_rss_mib": peak[0] / 1024, **numbers}


def _summary(out: str) -> dict[str, float]:
    line = out.strip().splitlines()[-1]
    words = line.replace(":", "").replace(",", "").split()
    return {words[i]: float(words[i + 1]) for i in range(len(words) - 1)
            if words[i] in ("read", "created", "skipped", "invalid")}


def main(argv: list[str] | None = None) -> int:
    _ensure_snip()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="snip import --workers (default: snip's, one per CPU)")
    parser.add_argument("--bar", type=float, default=20_000, help="links/s the median must reach")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="snip-bench-import-"))
    csv_path = tmp / "urls.csv"
    t0 = time.perf_counter()
    bad = generate(csv_path, opts.rows)
    print(f"# snip import benchmark\n\nGenerated {opts.rows:,} rows ({bad:,} invalid), "
          f"{csv_path.stat().st_size / 2**20:.1f} MiB, in {time.perf_counter() - t0:.1f} s.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNIP_")}
    env["SNIP_BASE_URL"] = "https://s.example"
    env["SNIP_LOG_LEVEL"] = "warning"
    results = []
    failed = False
    db = tmp / "snip-0.db"
    for n in range(opts.runs):
        db = tmp / f"snip-{n}.db"
        env["SNIP_DATABASE_URL"] = f"sqlite:///{db}"
        subprocess.run([sys.executable, "-m", "snip", "db", "upgrade"], env=env, check=True,
                       capture_output=True)
        load = os.getloadavg()[0]
        r = run_import(csv_path, env, opts.workers)
        r["load"] = load
        if r.get("created") != opts.rows - bad or r.get("invalid") != bad:
            print(f"CHECK FAILED: run {n + 1} created {r.get('created')}, invalid "
                  f"{r.get('invalid')}; expected {opts.rows - bad} and {bad}")
            failed = True
        results.append(r)
        print(f"run {n + 1}: {r['read'] / r['wall']:,.0f} links/s", file=sys.stderr)
    again = run_import(csv_path, env, opts.workers)
    if again.get("created") != 0 or again.get("skipped") != opts.rows - bad:
        print(f"CHECK FAILED: the re-run created {again.get('created')}")
        failed = True

    rates = [r["read"] / r["wall"] for r in results]
    median = statistics.median(rates)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Command: `python bench/import.py {' '.join(argv or sys.argv[1:])}`  ")
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs ({cpu}); "
          f"Python {platform.python_version()}; SQLite file on {tmp}\n")
    print("| run | wall s | links/s | CPU s (tree) | CPU µs/link (tree) | CPU s (main "
          "process) | peak RSS, largest process MiB | peak RSS, whole tree MiB | load avg "
          "at start |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in [*enumerate(results, 1), ("re-run (creates nothing)", again)]:
        print(f"| {n} | {r['wall']:.1f} | {r['read'] / r['wall']:,.0f} | {r['cpu']:.1f} | "
              f"{r['cpu'] / r['read'] * 1e6:.0f} | {r['main_cpu']:.1f} | "
              f"{r['maxrss_mib']:.0f} | {r['tree_rss_mib']:.0f} | {r.get('load', 0):.1f} |")
    spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if len(rates) > 1 else "one run"
    print(f"\nMedian {median:,.0f} links/s (spread {spread}); the bar is {opts.bar:,.0f}: "
          f"{'holds' if median >= opts.bar else 'NOT reached'}.")
    if opts.keep:
        print(f"\nKept {tmp}")
    else:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    if failed:
        return 2
    return 0 if median >= opts.bar else 1


if __name__ == "__main__":
    sys.exit(main())
