"""No click lost: N clicks to a running `snip serve`, SIGTERM, and the database holds exactly N
(SQLite and PostgreSQL); in distributed mode a `snip worker` killed with SIGKILL mid-batch
leaves its entries pending, another worker claims them, and the database still ends with N.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers import (
    http,
    many_requests,
    run_cli,
    serving,
    snip_env,
    sqlite_url,
    start_cli,
    wait_for_log,
)
from tests.postgres import fetchval
from tests.redis_service import redis_url

pytestmark = pytest.mark.e2e

N = 600
VISITS = ("SELECT l.visits + COALESCE((SELECT SUM(c.clicks) FROM link_counters c "
          "WHERE c.code = l.code), 0) FROM links l WHERE l.code = {}")


def sqlite_value(path: Path, query: str, *args: Any) -> Any:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(query, args).fetchone()[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path
             ) -> tuple[str, Callable[..., Any], str]:
    """(SNIP_DATABASE_URL, run one query → first value, the parameter placeholder)."""
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        return url, lambda q, *a: fetchval(url, q, *a), "$1"
    path = tmp_path / "snip.db"
    return sqlite_url(path), lambda q, *a: sqlite_value(path, q, *a), "?"


def test_sigterm_writes_every_click(tmp_path: Path,
                                    database: tuple[str, Callable[..., Any], str]) -> None:
    url, value, mark = database
    # Only the shutdown can write these clicks: the batch age is far away, the batch huge.
    env = snip_env(database_url=url, visit_flush_interval="300", clicks_batch_size="1000")
    with serving(tmp_path, env, workers=2) as server:
        wait_for_log(server, "worker-2")
        made = http("POST", f"{server.base_url}/api/v1/links", {"url": "https://example.com/n"})
        assert made.status == 201, made.body
        code = made.json()["code"]
        replies = many_requests(N, "GET", f"{server.base_url}/{code}", in_flight=20)
        assert Counter(r.status for r in replies) == {302: N}
        assert value(f"SELECT COUNT(*) FROM clicks WHERE code = {mark}", code) == 0
    # `serving` has sent SIGTERM and checked a clean exit (status 0, no traceback).
    assert value(f"SELECT COUNT(*) FROM clicks WHERE code = {mark}", code) == N
    assert value(f"SELECT COUNT(DISTINCT id) FROM clicks WHERE code = {mark}", code) == N
    assert value(VISITS.format(mark), code) == N


# -- distributed mode -----------------------------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"snip-e2e-{uuid.uuid4().hex[:8]}:"
    yield name
    client = redis.Redis.from_url(redis_url())
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)
    client.close()


def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(tmp_path: Path,
                                                                prefix: str) -> None:
    url = redis_url()
    db = tmp_path / "snip.db"
    stream = prefix + "clicks"
    env = snip_env(database_url=sqlite_url(db), redis_url=url, redis_prefix=prefix,
                   clicks_embedded_worker="false", clicks_batch_size="100",
                   clicks_claim_idle="1", visit_flush_interval="0.1")
    r = redis.Redis.from_url(url)

    # 1. The server puts clicks in the stream; no consumer runs.
    with serving(tmp_path, env) as server:
        code = http("POST", f"{server.base_url}/api/v1/links",
                    {"url": "https://example.com/d"}).json()["code"]
        replies = many_requests(N, "GET", f"{server.base_url}/{code}", in_flight=20)
        assert Counter(r.status for r in replies) == {302: N}
    assert r.xlen(stream) >= N // 100  # entries of up to 100 clicks
    assert sqlite_value(db, "SELECT COUNT(*) FROM clicks") == 0

    # 2. A worker takes a batch while the database is locked, and is killed mid-batch.
    lock = sqlite3.connect(db, timeout=30, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    first = start_cli("worker", "--name", "doomed", env=env, cwd=tmp_path, name="doomed")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            groups = r.xinfo_groups(stream)
            if groups and int(groups[0]["pending"]) > 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the worker took no batch\n{first.stderr()}")
        first.kill()  # SIGKILL: no cleanup, no acknowledgement
        pending = int(r.xinfo_groups(stream)[0]["pending"])
        assert pending >= 1  # entries read and never acknowledged
    finally:
        first.kill()
        lock.execute("ROLLBACK")
        lock.close()

    # 3. Another worker claims the dead one's entries (idle > 1 s) and writes everything.
    time.sleep(1.5)
    done = run_cli("worker", "--once", "--name", "survivor", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "claimed" in done.stderr
    assert sqlite_value(db, "SELECT COUNT(*) FROM clicks WHERE code = ?", code) == N
    assert sqlite_value(db, VISITS.format("?"), code) == N
    assert int(r.xinfo_groups(stream)[0]["pending"]) == 0
    assert r.xlen(stream) == 0  # acknowledged entries are deleted
    r.close()


def test_a_worker_stops_cleanly_on_sigterm(tmp_path: Path, prefix: str) -> None:
    env = snip_env(database_url=sqlite_url(tmp_path / "snip.db"), redis_url=redis_url(),
                   redis_prefix=prefix)
    worker = start_cli("worker", env=env, cwd=tmp_path, name="w")
    try:
        deadline = time.monotonic() + 20
        while "reading" not in worker.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reading" in worker.stderr(), worker.stderr()
    finally:
        status = worker.stop()
    assert status == 0, worker.stderr()
    assert "Traceback" not in worker.stderr()


def test_worker_needs_redis(tmp_path: Path) -> None:
    done = run_cli("worker", "--once", env=snip_env(database_url=sqlite_url(tmp_path / "x.db")),
                   cwd=tmp_path)
    assert done.returncode != 0 and "SNIP_REDIS_URL" in done.stderr
