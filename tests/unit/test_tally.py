"""The visit tally (click tracking off): visits counted in memory, written in aggregate, none lost.

The tests on real storage run on SQLite and PostgreSQL (the `services` fixture) and read the
visits as the app reports them: `links.visits` plus the link's counter shards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select

from snip.adapters.sql.clicks import SqlClickStore
from snip.adapters.sql.schema import link_counters
from snip.bootstrap import Snip
from snip.domain.errors import StorageUnavailable
from snip.service_layer.links import NewLink
from snip.service_layer.tally import VisitStore, VisitTally

GET = {"method": "GET"}
HEAD = {"method": "HEAD"}


class FakeStore:
    """Stands in for the database: writes take a while and can be made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.fail = False
        self.totals: Counter[str] = Counter()
        self.calls: list[list[tuple[str, int]]] = []

    async def add_visits(self, counts: Sequence[tuple[str, int]]) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StorageUnavailable("down")
        self.calls.append(list(counts))
        self.totals.update(dict(counts))


class Flaky:
    """A real store behind a switch: unavailable while `down`, then the database itself."""

    def __init__(self, store: VisitStore) -> None:
        self.store = store
        self.down = False
        self.tries = 0

    async def add_visits(self, counts: Sequence[tuple[str, int]]) -> None:
        self.tries += 1
        if self.down:
            raise StorageUnavailable("the database is unavailable; try again shortly")
        await self.store.add_visits(counts)


async def make_links(snip: Snip, *codes: str) -> None:
    for code in codes:
        await snip.links.create(NewLink(url=f"https://example.com/{code}", code=code))


async def visits(snip: Snip, code: str) -> int:
    return (await snip.links.get(code)).visits


# -- in memory --------------------------------------------------------------------------------


async def test_only_counted_gets_are_visits() -> None:
    store = FakeStore()
    tally = VisitTally(store)
    tally.record("a", GET, True)
    tally.record("a", {}, True)  # no method: a GET, as bare_click reads it
    tally.record("a", HEAD, True)  # HEAD only looks
    tally.record("a", GET, False)  # a limited link took its visit already
    tally.record("b", HEAD, True)
    assert tally.pending == 2 and tally.lag() >= 0
    await tally.flush()
    assert store.calls == [[("a", 2)]]
    assert tally.pending == 0 and tally.written == 2 and tally.dropped == 0
    assert tally.lag() == 0


async def test_counts_are_aggregated_and_sorted_by_code() -> None:
    store = FakeStore()
    tally = VisitTally(store)
    for code in ["c", "a", "b", "a", "c", "c"]:
        tally.record(code, GET, True)
    await tally.flush()
    assert store.calls == [[("a", 2), ("b", 1), ("c", 3)]]
    await tally.flush()  # nothing new: no write
    assert len(store.calls) == 1


async def test_a_failed_write_keeps_its_counts_with_those_counted_meanwhile() -> None:
    store = FakeStore()
    tally = VisitTally(store)
    store.fail = True
    tally.record("a", GET, True)
    tally.record("b", GET, True)
    with pytest.raises(StorageUnavailable):
        await tally.flush()
    assert tally.pending == 2 and tally.written == 0 and tally.lag() >= 0
    tally.record("a", GET, True)
    store.fail = False
    await tally.flush()
    assert store.calls == [[("a", 2), ("b", 1)]]
    assert tally.pending == 0 and tally.written == 3 and tally.lag() == 0


async def test_counts_of_a_write_in_progress_are_pending_until_written() -> None:
    store = FakeStore(delay=0.1)
    tally = VisitTally(store)
    tally.record("a", GET, True)
    writing = asyncio.create_task(tally.flush())
    await asyncio.sleep(0.02)
    tally.record("a", GET, True)
    assert tally.pending == 2 and tally.lag() > 0
    await writing
    assert tally.pending == 1 and tally.written == 1


async def test_a_cancelled_write_keeps_its_counts() -> None:
    store = FakeStore(delay=1.0)
    tally = VisitTally(store)
    for _ in range(5):
        tally.record("a", GET, True)
    writing = asyncio.create_task(tally.flush())
    await asyncio.sleep(0.02)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert tally.pending == 5
    store.delay = 0
    await tally.flush()
    assert store.totals == {"a": 5}


async def test_close_during_a_write_loses_nothing() -> None:
    store = FakeStore(delay=0.2)
    tally = VisitTally(store, interval=0.01)
    tally.start()
    for _ in range(100):
        tally.record("a", GET, True)
    await asyncio.sleep(0.05)  # the loop's write is now in flight
    assert tally.pending == 100
    for _ in range(50):
        tally.record("b", GET, True)
    await tally.close()
    assert store.totals == {"a": 100, "b": 50}
    assert tally.pending == 0 and tally.written == 150


async def test_the_loop_backs_off_and_warns_once_per_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    tally = VisitTally(store, interval=0.01)
    store.fail = True
    tally.record("a", GET, True)
    with caplog.at_level(logging.INFO, logger="snip.service_layer.tally"):
        tally.start()
        await asyncio.sleep(0.3)  # tries at ~0.01, 0.03, 0.07, 0.15, 0.31: backing off
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "storage unavailable" in warnings[0].getMessage()
        store.fail = False
        await asyncio.sleep(0.4)
        await tally.close()
    assert store.totals == {"a": 1}
    assert any("written again" in r.getMessage() for r in caplog.records)


# -- on real storage (SQLite and PostgreSQL) --------------------------------------------------


async def test_visits_counted_reach_the_links_after_a_flush(services: Snip) -> None:
    await make_links(services, "va", "vb", "vc")
    tally = VisitTally(SqlClickStore(services.engine, shards=4))
    expected = {"va": 700, "vb": 250, "vc": 50}
    for code, n in expected.items():
        for _ in range(n):
            tally.record(code, GET, True)
            tally.record(code, HEAD, True)  # never a visit
            tally.record(code, GET, False)  # counted elsewhere (a link with a limit)
    await tally.flush()
    assert {code: await visits(services, code) for code in expected} == expected
    assert tally.written == 1000 and tally.pending == 0
    for _ in range(3):  # a second flush adds to what is there (another shard, maybe)
        tally.record("va", GET, True)
    await tally.flush()
    assert await visits(services, "va") == 703


async def test_unavailable_storage_keeps_the_counts_and_writes_them_once(services: Snip) -> None:
    await make_links(services, "ua", "ub")
    flaky = Flaky(SqlClickStore(services.engine))
    tally = VisitTally(flaky)
    for _ in range(40):
        tally.record("ua", GET, True)
    tally.record("ub", GET, True)
    flaky.down = True
    for _ in range(3):
        with pytest.raises(StorageUnavailable):
            await tally.flush()
    assert await visits(services, "ua") == 0
    tally.record("ua", GET, True)
    flaky.down = False
    await tally.flush()
    await tally.flush()
    assert (await visits(services, "ua"), await visits(services, "ub")) == (41, 1)
    assert flaky.tries == 4 and tally.written == 42 and tally.pending == 0


async def test_close_writes_what_is_left(services: Snip) -> None:
    await make_links(services, "cl")
    tally = VisitTally(SqlClickStore(services.engine), interval=60.0)
    tally.start()
    for _ in range(17):
        tally.record("cl", GET, True)
    await asyncio.sleep(0.01)
    assert await visits(services, "cl") == 0  # the loop has not written yet
    await tally.close()
    assert await visits(services, "cl") == 17 and tally.pending == 0


async def test_concurrent_flushes_do_not_double_count(services: Snip) -> None:
    await make_links(services, "ca", "cb")
    tally = VisitTally(SqlClickStore(services.engine, shards=8))

    async def visit_and_flush(i: int) -> None:
        for _ in range(10):
            tally.record("ca" if i % 2 else "cb", GET, True)
        await tally.flush()

    await asyncio.gather(*(visit_and_flush(i) for i in range(20)))
    await tally.flush()
    assert (await visits(services, "ca"), await visits(services, "cb")) == (100, 100)
    assert tally.written == 200


async def test_add_visits_writes_many_links_in_one_shard(services: Snip) -> None:
    store = SqlClickStore(services.engine, shards=8)
    counts = [(f"m{i:05d}", i % 7 + 1) for i in range(2500)]  # more than one statement's worth
    await store.add_visits([*counts, ("m00000", 2)])  # a code twice is added up
    await store.add_visits([])
    async with services.engine.connect() as conn:
        rows, shards, total = (await conn.execute(
            select(func.count(), func.count(link_counters.c.shard.distinct()),
                   func.sum(link_counters.c.clicks))
            .where(link_counters.c.code.like("m%")))).one()
    assert (rows, shards, total) == (2500, 1, sum(n for _, n in counts) + 2)
