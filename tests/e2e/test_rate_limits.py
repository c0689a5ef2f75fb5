"""Rate limits across real `snip serve` processes: shared in Redis, per process without it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import Reply, Server, all_at_once, http, metric_samples
from tests.redis_service import redis_url

pytestmark = pytest.mark.e2e

LIMIT = 25


def burst(servers: list[Server], per_server: int, path: str,
          method: str = "GET", body: Callable[[int], object] | None = None) -> list[Reply]:
    """`per_server` requests to each server, all servers at the same moment."""
    with ThreadPoolExecutor(len(servers)) as pool:
        runs = [pool.submit(all_at_once, per_server, method, f"{s.base_url}{path}", body)
                for s in servers]
        return [reply for run in runs for reply in run.result()]


def test_two_servers_sharing_redis_hold_one_limit(
    start_snip: Callable[..., Server], server_env: dict[str, str],
) -> None:
    env = {**server_env, "SNIP_REDIS_URL": redis_url(),
           "SNIP_REDIS_PREFIX": f"snip-e2e-{secrets.token_hex(4)}:",
           "SNIP_RATE_LIMIT_NOT_FOUND": f"{LIMIT}/hour",
           "SNIP_RATE_LIMIT_ANONYMOUS_CREATE": f"{LIMIT}/hour"}
    servers = [start_snip(env), start_snip(env, workers=2)]  # three processes in all

    replies = burst(servers, 40, "/nope123")
    statuses = [r.status for r in replies]
    assert LIMIT <= statuses.count(404) <= LIMIT + 1, statuses
    assert statuses.count(404) + statuses.count(429) == len(replies)
    refused = [r for r in replies if r.status == 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert all(r.headers["ratelimit-remaining"] == "0" for r in refused)

    made = burst(servers, 30, "/api/v1/links", "POST",
                 lambda i: {"url": f"https://example.com/{i}"})
    created = [r for r in made if r.status == 201]
    assert LIMIT <= len(created) <= LIMIT + 1, [r.status for r in made]
    assert {r.status for r in made} == {201, 429}

    # Every refusal is counted: each server's /metrics sums its own worker processes, whose
    # files are written once a second.
    def counted() -> float:
        return sum(metric_samples(http("GET", f"{s.base_url}/metrics").body.decode())
                   .get('snip_rate_limited_total{limit="not_found"}', 0.0) for s in servers)

    deadline = time.monotonic() + 5
    while counted() != statuses.count(429) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted() == statuses.count(429)


def test_without_redis_one_process_is_exact(
    start_snip: Callable[..., Server], server_env: dict[str, str],
) -> None:
    server = start_snip({**server_env, "SNIP_RATE_LIMIT_NOT_FOUND": f"{LIMIT}/hour"})
    replies = all_at_once(60, "GET", f"{server.base_url}/nope123")
    statuses = [r.status for r in replies]
    assert statuses.count(404) == LIMIT and statuses.count(429) == 60 - LIMIT
    page = next(r for r in replies if r.status == 429)
    assert page.headers["content-type"].startswith("text/html")
    assert b"Too many requests" in page.body
