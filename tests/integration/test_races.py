"""Concurrent creates: a custom code goes to exactly one caller, `reuse` hands out one link,
random codes never collide. In-process through the ASGI app (on each backend), and against
`snip serve` with two worker processes sharing one database: SQLite, and PostgreSQL at the
sizes the production target asks for (200 racing creates, 20,000 random codes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import (
    Reply,
    Server,
    all_at_once,
    http,
    many_requests,
    serving,
    snip_env,
    sqlite_url,
    wait_for_log,
)
from tests.postgres import PostgresDatabases, fetch, fetchval

# -- in-process, through the ASGI app -------------------------------------------------------------


async def test_same_custom_code_concurrently_one_wins(client: httpx.AsyncClient) -> None:
    replies = await asyncio.gather(*(
        client.post("/api/v1/links", json={"url": f"https://example.com/{i}", "code": "race"})
        for i in range(50)
    ))
    assert Counter(r.status_code for r in replies) == {201: 1, 409: 49}
    winner = next(r.json() for r in replies if r.status_code == 201)
    assert all(r.json()["type"] == "/problems/code-taken" for r in replies if r.status_code == 409)

    stored = (await client.get("/api/v1/links/race")).json()
    assert stored["url"] == winner["url"]
    redirect = await client.get("/race")
    assert (redirect.status_code, redirect.headers["location"]) == (302, winner["url"])
    assert (await client.get("/api/v1/links")).json()["total"] == 1


async def test_same_url_with_reuse_concurrently_gets_one_code(client: httpx.AsyncClient) -> None:
    replies = await asyncio.gather(*(
        client.post("/api/v1/links", json={"url": "https://example.com/shared", "reuse": True})
        for _ in range(50)
    ))
    assert Counter(r.status_code for r in replies) == {201: 1, 200: 49}
    assert len({r.json()["code"] for r in replies}) == 1
    assert (await client.get("/api/v1/links")).json()["total"] == 1


async def test_random_codes_concurrently_are_all_distinct(client: httpx.AsyncClient) -> None:
    replies = await asyncio.gather(*(
        client.post("/api/v1/links", json={"url": f"https://example.com/{i}"}) for i in range(500)
    ))
    assert Counter(r.status_code for r in replies) == {201: 500}
    codes = {r.json()["code"]: r.json()["url"] for r in replies}
    assert len(codes) == 500
    listing = (await client.get("/api/v1/links", params={"per_page": 1000})).json()
    assert listing["total"] == 500
    assert {item["code"]: item["url"] for item in listing["items"]} == codes


# -- against `snip serve --workers 2` -------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server, two worker processes, one SQLite database; must stop cleanly afterwards."""
    cwd = tmp_path_factory.mktemp("races")
    env = snip_env(database_url=sqlite_url(cwd / "snip.db"))
    with serving(cwd, env, workers=2) as server:
        wait_for_log(server, "worker-2")
        yield server


def at_once(n: int, request: Callable[[int], Reply], *, threads: int | None = None) -> list[Reply]:
    """Send `n` requests from `threads` threads released together; every reply, in order."""
    pool_size = min(n, threads or n)
    barrier = threading.Barrier(pool_size, timeout=30)

    def send(i: int) -> Reply:
        if i < pool_size:
            barrier.wait()
        return request(i)

    with ThreadPoolExecutor(max_workers=pool_size) as pool:
        return list(pool.map(send, range(n), timeout=120))


def post(server: Server, path: str, body: dict[str, Any]) -> Reply:
    return http("POST", f"{server.base_url}{path}", body, timeout=30)


@pytest.mark.e2e
def test_same_custom_code_across_workers_one_wins(two_workers: Server) -> None:
    replies = at_once(100, lambda i: post(two_workers, "/api/v1/links",
                                          {"url": f"https://example.com/w/{i}", "code": "w-race"}))
    assert Counter(r.status for r in replies) == {201: 1, 409: 99}, \
        [r.body[:200] for r in replies if r.status >= 500]
    winner = next(r.json() for r in replies if r.status == 201)

    assert http("GET", f"{two_workers.base_url}/api/v1/links/w-race").json()["url"] == winner["url"]
    redirect = http("GET", f"{two_workers.base_url}/w-race")
    assert (redirect.status, redirect.headers.get("location")) == (302, winner["url"])


@pytest.mark.e2e
def test_same_url_with_reuse_across_workers_gets_one_code(two_workers: Server) -> None:
    body = {"url": "https://example.com/w/shared", "reuse": True}
    replies = at_once(50, lambda _: post(two_workers, "/api/v1/links", body))
    assert Counter(r.status for r in replies) == {201: 1, 200: 49}, \
        [r.body[:200] for r in replies if r.status >= 500]
    assert len({r.json()["code"] for r in replies}) == 1


@pytest.mark.e2e
def test_random_codes_across_workers_are_all_distinct(two_workers: Server) -> None:
    replies = at_once(500, lambda i: post(two_workers, "/shorten",
                                          {"url": f"https://example.com/w/random/{i}"}),
                      threads=100)
    assert Counter(r.status for r in replies) == {201: 500}, \
        [r.body[:200] for r in replies if r.status >= 500]
    codes = [r.json()["code"] for r in replies]
    assert len(set(codes)) == 500
    for i in (0, 250, 499):  # each code leads to its own URL
        redirect = http("GET", f"{two_workers.base_url}/r/{codes[i]}")
        assert redirect.headers.get("location") == f"https://example.com/w/random/{i}"


# -- against `snip serve --workers 2` on PostgreSQL -----------------------------------------------


@dataclass
class PgServer:
    server: Server
    database_url: str

    @property
    def base_url(self) -> str:
        return self.server.base_url


@pytest.fixture(scope="module")
def pg_two_workers(tmp_path_factory: pytest.TempPathFactory,
                   postgres: PostgresDatabases) -> Iterator[PgServer]:
    """One server, two worker processes, one fresh PostgreSQL database; stops cleanly after."""
    cwd = tmp_path_factory.mktemp("pg-races")
    with postgres.database() as url, serving(cwd, snip_env(database_url=url), workers=2) as server:
        wait_for_log(server, "worker-2")
        yield PgServer(server, url)


def _server_errors(replies: list[Reply]) -> list[bytes]:
    return [r.body[:300] for r in replies if r.status >= 500]


@pytest.mark.e2e
def test_pg_same_url_with_reuse_across_workers_gets_one_link(pg_two_workers: PgServer) -> None:
    url = "https://example.com/pg/shared"
    replies = all_at_once(200, "POST", f"{pg_two_workers.base_url}/api/v1/links",
                          {"url": url, "reuse": True})
    assert Counter(r.status for r in replies) == {201: 1, 200: 199}, _server_errors(replies)
    codes = {r.json()["code"] for r in replies}
    assert len(codes) == 1

    rows = fetch(pg_two_workers.database_url, "SELECT code FROM links WHERE url = $1", url)
    assert [row["code"] for row in rows] == list(codes)
    listed = http("GET", f"{pg_two_workers.base_url}/api/v1/links?q=/pg/shared").json()
    assert [item["code"] for item in listed["items"]] == list(codes)


@pytest.mark.e2e
def test_pg_same_custom_code_across_workers_one_wins(pg_two_workers: PgServer) -> None:
    replies = all_at_once(200, "POST", f"{pg_two_workers.base_url}/api/v1/links",
                          lambda i: {"url": f"https://example.com/pg/code/{i}", "code": "pg-race"})
    assert Counter(r.status for r in replies) == {201: 1, 409: 199}, _server_errors(replies)
    assert all(r.json()["type"] == "/problems/code-taken" for r in replies if r.status == 409)
    winner = next(r.json() for r in replies if r.status == 201)

    rows = fetch(pg_two_workers.database_url, "SELECT url FROM links WHERE code = 'pg-race'")
    assert [row["url"] for row in rows] == [winner["url"]]
    redirect = http("GET", f"{pg_two_workers.base_url}/pg-race")
    assert (redirect.status, redirect.headers.get("location")) == (302, winner["url"])


RANDOM_CREATES = 20_000


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_pg_20000_random_codes_across_workers_are_all_distinct(pg_two_workers: PgServer) -> None:
    """20,000 creates, 50 in flight on keep-alive connections: 20,000 codes, no 5xx."""
    prefix = "https://example.com/pg/random/"
    started = time.monotonic()
    replies = many_requests(RANDOM_CREATES, "POST", f"{pg_two_workers.base_url}/api/v1/links",
                            lambda i: {"url": f"{prefix}{i}"}, in_flight=50, timeout=240)
    elapsed = time.monotonic() - started

    assert Counter(r.status for r in replies) == {201: RANDOM_CREATES}, \
        _server_errors(replies)[:5]
    codes = {r.json()["code"]: i for i, r in enumerate(replies)}
    assert len(codes) == RANDOM_CREATES
    stored = fetch(pg_two_workers.database_url,
                   "SELECT count(*) AS n, count(DISTINCT code) AS codes FROM links "
                   "WHERE url LIKE $1", prefix + "%")
    assert (stored[0]["n"], stored[0]["codes"]) == (RANDOM_CREATES, RANDOM_CREATES)
    for code in list(codes)[:: RANDOM_CREATES // 4]:  # each code holds its own URL
        stored_url = fetchval(pg_two_workers.database_url,
                              "SELECT url FROM links WHERE code = $1", code)
        assert stored_url == f"{prefix}{codes[code]}"
    print(f"{RANDOM_CREATES} creates in {elapsed:.1f} s ({RANDOM_CREATES / elapsed:.0f}/s)")
