"""PostgreSQL goes away under a running `snip serve`, and comes back.

The requirement: with PostgreSQL stopped or frozen, redirects of cached links keep working;
creates, edits, cache-miss redirects and /readyz answer 503 (with Retry-After) within a few
seconds, never after a hang; and when the database returns, snip recovers by itself, with no
restart, and loses no buffered visit counts.

The tests run a throwaway PostgreSQL cluster (and a throwaway redis-server) from
tests/pgcluster.py on free loopback ports, and stop or SIGSTOP only those: the shared services
on the machine are never touched.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from snip.adapters.sql.repository import _is_unavailable
from tests.helpers import Reply, Server, http, snip_env, start_server
from tests.pgcluster import PgCluster, RedisServer, pg_cluster, redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

CONNECT_TIMEOUT = 1.0  # SNIP_DB_CONNECT_TIMEOUT for the server under test
STATEMENT_TIMEOUT = 2.0  # SNIP_DB_STATEMENT_TIMEOUT
FLUSH_INTERVAL = 0.2  # SNIP_VISIT_FLUSH_INTERVAL
# Every answer while the database is down comes within this (3 × the connect timeout, and
# more than the statement timeout a frozen server makes snip wait out), not after a hang.
FAIL_FAST = 5.0
# A frozen server: one statement timeout (a pooled connection that no longer answers) plus
# slack, and no second wait on top (a ROLLBACK or a graceful close on that connection).
FAIL_FAST_FROZEN = STATEMENT_TIMEOUT + 1.5
CACHE_HIT = 1.0  # a cached redirect must not wait for the database at all
RECOVERY = 15.0  # the database is back: snip works again within this, by itself
HTTP_TIMEOUT = 20.0  # the client gives up long after FAIL_FAST, so a hang shows as a slow answer


# -- fixtures ---------------------------------------------------------------------------------------
# One cluster and one snip for the module (starting them is most of the time these tests take);
# every test restores the database it broke, and `database_up` makes sure of it even on failure.


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with pg_cluster() as cluster:
        yield cluster


def snip_settings(pg: PgCluster, **settings: str) -> dict[str, str]:
    return snip_env(
        database_url=pg.url,
        db_connect_timeout=str(CONNECT_TIMEOUT),
        db_statement_timeout=str(STATEMENT_TIMEOUT),
        visit_flush_interval=str(FLUSH_INTERVAL),
        cache_ttl="300",  # a cached link must outlive the outage
        db_pool_size="2",  # 2 + 2 overflow: a burst of requests finds the pool exhausted
        # ... and waits at most this for a connection: the operator's choice between riding out
        # a healthy burst (default 10 s) and failing fast in an outage (docs/operations.md).
        db_pool_timeout=str(CONNECT_TIMEOUT),
        **settings,
    )


@contextlib.contextmanager
def snip_serving(pg: PgCluster, cwd: Path, **settings: str) -> Iterator[Server]:
    """`snip serve` on the throwaway cluster; it must exit 0 on SIGTERM afterwards."""
    server = start_server(cwd, snip_settings(pg, **settings))
    try:
        yield server
    finally:
        # A test that failed mid-freeze must not leave the shutdown waiting out timeouts.
        pg.thaw()
        status = server.stop()
    assert status == 0, f"snip serve exited with {status}\n--- log ---\n{server.log()}"


@pytest.fixture(scope="module")
def server(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with snip_serving(pg, tmp_path_factory.mktemp("snip")) as running:
        yield running


@pytest.fixture(autouse=True)
def database_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did to the cluster, the next one starts with it running and thawed."""
    pg = request.getfixturevalue("pg") if "pg" in request.fixturenames else None
    yield
    if pg is not None:
        pg.thaw()
        if not pg.running:
            pg.start()


# -- helpers ----------------------------------------------------------------------------------------


def timed(method: str, url: str, body: object = None) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = http(method, url, body, timeout=HTTP_TIMEOUT)
    return reply, time.monotonic() - started


def create(server: Server, url: str) -> dict[str, object]:
    reply = http("POST", f"{server.base_url}/api/v1/links", {"url": url})
    assert reply.status == 201, reply.body
    return reply.json()  # type: ignore[no-any-return]


def assert_unavailable(reply: Reply, elapsed: float, what: str, *, problem: bool,
                       bound: float) -> None:
    """503 with Retry-After, within `bound` s; problem+json for the API, a page for redirects."""
    assert reply.status == 503, f"{what}: {reply.status} {reply.body[:300]!r}"
    assert elapsed < bound, f"{what} took {elapsed:.2f} s (bound {bound} s)"
    assert reply.headers.get("retry-after", "").isdigit(), f"{what}: {dict(reply.headers)}"
    if problem:
        assert reply.headers["content-type"].startswith("application/problem+json"), what
        assert reply.json()["type"] == "/problems/storage-unavailable", reply.body


def assert_redirects(server: Server, code: str, location: str, times: int = 5) -> None:
    for _ in range(times):
        reply, elapsed = timed("GET", f"{server.base_url}/{code}")
        assert (reply.status, reply.headers.get("location")) == (302, location), reply.body[:300]
        assert elapsed < CACHE_HIT, f"a cached redirect took {elapsed:.2f} s"


def poll(what: str, attempt: Callable[[], bool], timeout: float = RECOVERY,
         interval: float = 0.2) -> float:
    """Call `attempt` until it returns True, for at most `timeout` s; the time it took."""
    started = time.monotonic()
    deadline = started + timeout
    while not attempt():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def visits(server: Server, code: str) -> int | None:
    """The link's stored visit count; None while the database is (still) unavailable."""
    reply = http("GET", f"{server.base_url}/api/v1/links/{code}", timeout=HTTP_TIMEOUT)
    if reply.status == 503:
        return None
    assert reply.status == 200, reply.body
    return int(reply.json()["visits"])


def check_degraded(server: Server, code: str, location: str, bound: float) -> str:
    """The database is down: what must still work does, the rest is 503 within `bound` s.

    Returns the never-asked-for code it tried, for `check_recovered`.
    """
    base = server.base_url
    unseen = f"unseen{secrets.token_hex(4)}"
    # (a) the cached link still redirects, at cache speed
    assert_redirects(server, code, location)
    # (b) a create
    reply, elapsed = timed("POST", f"{base}/api/v1/links", {"url": "https://example.com/during"})
    assert_unavailable(reply, elapsed, "POST /api/v1/links", problem=True, bound=bound)
    # (c) an edit
    reply, elapsed = timed("PATCH", f"{base}/api/v1/links/{code}", {"title": "during"})
    assert_unavailable(reply, elapsed, "PATCH /api/v1/links/{code}", problem=True, bound=bound)
    # (d) a code nobody asked for yet is a cache miss: 503, not 404 (we do not know) and no hang
    reply, elapsed = timed("GET", f"{base}/{unseen}")
    assert_unavailable(reply, elapsed, f"GET /{unseen} (cache miss)", problem=False,
                       bound=bound)
    # (e) not ready
    reply, elapsed = timed("GET", f"{base}/readyz")
    assert reply.status == 503, reply.body
    assert elapsed < bound, f"/readyz took {elapsed:.2f} s (bound {bound} s)"
    # and the cached link still redirects after all that
    assert_redirects(server, code, location, times=2)
    return unseen


def check_recovered(server: Server, code: str, location: str, unseen: str) -> float:
    """The database is back: creates succeed again within RECOVERY s, with the same process."""
    base = server.base_url
    pid = server.process.pid

    def created() -> bool:
        reply = http("POST", f"{base}/api/v1/links", {"url": "https://example.com/after"},
                     timeout=HTTP_TIMEOUT)
        assert reply.status in (201, 503), reply.body  # nothing but "not yet" on the way
        return reply.status == 201

    took = poll("a create after the database came back", created)
    assert server.process.poll() is None and server.process.pid == pid, "snip restarted"
    assert http("GET", f"{base}/readyz").status == 200
    reply = http("PATCH", f"{base}/api/v1/links/{code}", {"title": "after"})
    assert reply.status == 200, reply.body
    # The 503 for the unknown code was not remembered as "no such link", nor as an error.
    assert http("GET", f"{base}/{unseen}").status == 404
    assert_redirects(server, code, location, times=2)
    return took


# -- tests ------------------------------------------------------------------------------------------


def test_database_stopped_then_started(pg: PgCluster, server: Server) -> None:
    link = create(server, "https://example.com/stopped")
    code, location = str(link["code"]), str(link["url"])
    assert_redirects(server, code, location, times=1)  # now in snip's cache

    pg.stop()
    unseen = check_degraded(server, code, location, FAIL_FAST)

    pg.start()
    check_recovered(server, code, location, unseen)


def test_database_frozen_then_thawed(pg: PgCluster, server: Server) -> None:
    link = create(server, "https://example.com/frozen")
    code, location = str(link["code"]), str(link["url"])
    assert_redirects(server, code, location, times=1)

    # SIGSTOP: connections stay open and connects are accepted by the kernel, nothing answers;
    # only snip's own timeouts stand between a request and a hang.
    pg.freeze()
    unseen = check_degraded(server, code, location, FAIL_FAST_FROZEN)

    pg.thaw()
    check_recovered(server, code, location, unseen)


def test_a_restart_between_requests_fails_none(pg: PgCluster, server: Server) -> None:
    """Pooled connections the restart closed are replaced on checkout, not handed to a request."""
    for i in range(3):  # several pooled connections
        create(server, f"https://example.com/warm/{i}")
    pg.stop()
    pg.start()
    time.sleep(0.2)  # let snip's event loop read the connections' close
    for i in range(12):  # more than the pool holds: every pooled connection is tried
        reply = http("POST", f"{server.base_url}/api/v1/links", {"url": f"https://e.com/{i}"})
        assert reply.status == 201, f"request {i} after the restart: {reply.status} {reply.body!r}"


def test_a_burst_of_writes_on_a_frozen_database_all_fail_fast(pg: PgCluster,
                                                             server: Server) -> None:
    """More requests than connections: those left waiting for one get 503 too, not a 500."""
    create(server, "https://example.com/burst")  # a pooled connection to go stale
    pg.freeze()
    burst = 12

    def post(i: int) -> tuple[Reply, float]:
        return timed("POST", f"{server.base_url}/api/v1/links", {"url": f"https://e.com/b{i}"})

    with ThreadPoolExecutor(max_workers=burst) as pool:
        replies = list(pool.map(post, range(burst), timeout=HTTP_TIMEOUT * 2))
    for i, (reply, elapsed) in enumerate(replies):
        assert_unavailable(reply, elapsed, f"burst POST {i}", problem=True, bound=FAIL_FAST)

    pg.thaw()
    poll("a create after the thaw",
         lambda: http("POST", f"{server.base_url}/api/v1/links",
                      {"url": "https://example.com/after-burst"}).status == 201)


def test_visits_counted_during_an_outage_are_written_after_it(pg: PgCluster,
                                                             server: Server) -> None:
    link = create(server, "https://example.com/counted")
    code, location = str(link["code"]), str(link["url"])
    assert_redirects(server, code, location, times=1)
    poll("the first visit written", lambda: visits(server, code) == 1, timeout=5)

    pg.stop()
    during = 25
    assert_redirects(server, code, location, times=during)
    time.sleep(3 * FLUSH_INTERVAL)  # flushes fail meanwhile; the counts must be kept

    pg.start()
    poll("the visits buffered during the outage written",
         lambda: (visits(server, code) or 0) >= 1 + during)
    time.sleep(3 * FLUSH_INTERVAL)  # and not written twice by a later flush
    assert visits(server, code) == 1 + during


# -- Redis ------------------------------------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def redis_dbsize(server: RedisServer) -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"DBSIZE\r\n")
        answer = sock.recv(64)
    assert answer.startswith(b":"), answer
    return int(answer[1:].strip())


def test_snip_serves_with_a_throwaway_redis(pg: PgCluster, redis: RedisServer,
                                            tmp_path: Path) -> None:
    with snip_serving(pg, tmp_path, redis_url=redis.url) as server:
        link = create(server, "https://example.com/redis")
        code, location = str(link["code"]), str(link["url"])
        assert_redirects(server, code, location, times=2)
        assert http("GET", f"{server.base_url}/readyz").status == 200
        # The cache miss above went through the shared tier: this Redis (no other) holds it.
        assert redis_dbsize(redis) >= 1


# -- which errors mean "try again later" --------------------------------------------------------


class _DriverError(Exception):
    """Stands for the DBAPI error SQLAlchemy wraps: asyncpg's carry a SQLSTATE, SQLite's none."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(message: str, sqlstate: str | None = None) -> DBAPIError:
    return DBAPIError("SELECT 1", None, _DriverError(message, sqlstate))


@pytest.mark.parametrize(("error", "unavailable"), [
    (ConnectionRefusedError(111, "Connect call failed"), True),
    (TimeoutError(), True),  # asyncpg's connect timeout and command_timeout, unwrapped
    (PoolTimeout("QueuePool limit of size 2 overflow 2 reached"), True),
    (_wrapped("sorry, too many clients already", "53300"), True),
    (_wrapped("the database system is starting up", "57P03"), True),
    (_wrapped("terminating connection due to administrator command", "57P01"), True),
    (_wrapped("connection was closed in the middle of operation", "08003"), True),
    (_wrapped("canceling statement due to statement timeout", "57014"), True),
    (_wrapped("database is locked"), True),  # SQLite, busy_timeout exceeded
    (_wrapped('syntax error at or near "SELEC"', "42601"), False),
    (_wrapped('relation "links" does not exist', "42P01"), False),
    (_wrapped("no such table: links"), False),
])
def test_only_connection_level_errors_count_as_unavailable(error: Exception,
                                                           unavailable: bool) -> None:
    assert _is_unavailable(error) is unavailable
