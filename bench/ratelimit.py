"""Cost of snip's rate limiters: one `hit` in process and in Redis, and memory per client key.

Measures, on the limiters snip really uses (`snip.adapters.ratelimit`):

* in-process GCRA: µs per `hit` for one hot key, and for a new key every call (an attacker
  rotating addresses, with idle-key pruning and the key cap at work);
* Redis GCRA (the Lua script, one round trip): µs per `hit`, sequential and 50 in flight;
* memory: bytes per remembered key (tracemalloc), and the size the key cap holds it to.

Every timing is the median of the repeats with min and max.

Run:  .venv/bin/python bench/ratelimit.py [--redis redis://127.0.0.1:6379/0] [--quick]
Needs snip installed (the project's virtualenv); Redis rows are left out without --redis.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import statistics
import sys
import time
import tracemalloc

from snip.adapters.ratelimit import MemoryRateLimiter, RedisRateLimiter
from snip.service_layer.limits import Rate


def _row(name: str, samples: list[float]) -> str:
    return (f"| {name} | {statistics.median(samples):.2f} | {min(samples):.2f} | "
            f"{max(samples):.2f} |")


async def _memory(n: int, repeats: int) -> list[str]:
    hot, rotating = [], []
    for _ in range(repeats):
        limiter = MemoryRateLimiter("bench", Rate(60, 60), max_keys=10**9)
        start = time.perf_counter()
        for _ in range(n):
            limiter.hit_now("198.51.100.7")
        hot.append((time.perf_counter() - start) / n * 1e6)
        limiter = MemoryRateLimiter("bench", Rate(60, 60), max_keys=n // 2)
        keys = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
        start = time.perf_counter()
        for key in keys:
            limiter.hit_now(key)
        rotating.append((time.perf_counter() - start) / n * 1e6)
    rows = [_row("in process, one key", hot), _row("in process, a new key each hit", rotating)]

    # A stopped clock: every key stays live (in real time, idle keys would be forgotten).
    limiter = MemoryRateLimiter("bench", Rate(60, 60), max_keys=10**9, clock=lambda: 10**12)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):  # the key strings are made here, as each request makes its own
        limiter.hit_now(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(limiter) == n
    per_key = (after - before) / n
    rows.append(f"\nMemory: {per_key:.0f} bytes per remembered key (its IPv4 key string included), "
                f"so the default cap of 100,000 keys bounds one limiter at about "
                f"{per_key * 100_000 / 1e6:.0f} MB.")
    return rows


async def _redis(url: str, n: int, repeats: int) -> list[str]:
    import redis.asyncio as redis

    client = redis.from_url(url)
    prefix = f"snip-bench-{secrets.token_hex(4)}:"
    limiter = RedisRateLimiter("bench", Rate(10**6, 60), client, prefix=prefix)
    sequential, parallel = [], []
    try:
        await limiter.hit("warm")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n):
                await limiter.hit("198.51.100.7")
            sequential.append((time.perf_counter() - start) / n * 1e6)
            start = time.perf_counter()
            for _ in range(n // 50):
                await asyncio.gather(*(limiter.hit(f"k{i}") for i in range(50)))
            parallel.append((time.perf_counter() - start) / (n // 50 * 50) * 1e6)
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return [_row("Redis, sequential (one round trip each)", sequential),
            _row("Redis, 50 in flight (per hit)", parallel)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", help="Redis URL for the Redis rows")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats = (20_000, 3) if args.quick else (200_000, 5)
    print(f"`{' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}`, "
          f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}"
          "\n")
    print("| Limiter | µs per hit (median) | min | max |\n|---|---|---|---|")
    memory = await _memory(n, repeats)
    rows = memory[:2]
    if args.redis:
        rows += await _redis(args.redis, n // 20, repeats)
    print("\n".join(rows))
    print(memory[2])


if __name__ == "__main__":
    asyncio.run(main())
