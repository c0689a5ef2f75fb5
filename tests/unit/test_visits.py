"""The visit counter: batches, retries, and nothing lost when the process stops."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from snip.domain.errors import StorageUnavailable
from snip.service_layer.visits import VisitCounter


class SlowStore:
    """Stands in for the database: writes take a while and can be made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.fail = False
        self.written: dict[str, int] = {}
        self.writes = 0

    async def add_visits(self, counts: Mapping[str, int]) -> None:
        self.writes += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StorageUnavailable("down")
        for code, n in counts.items():
            self.written[code] = self.written.get(code, 0) + n


async def test_close_during_a_write_loses_nothing() -> None:
    store = SlowStore(delay=0.2)
    counter = VisitCounter(store, interval=0.01)  # type: ignore[arg-type]
    counter.start()
    for _ in range(100):
        counter.record("a")
    await asyncio.sleep(0.05)  # the loop's write is now in flight
    assert store.writes == 1
    for _ in range(50):
        counter.record("b")
    await counter.close()
    assert store.written == {"a": 100, "b": 50}
    assert counter.pending == 0 and counter.written == 150


async def test_failed_writes_keep_their_counts_for_the_next_try() -> None:
    store = SlowStore()
    counter = VisitCounter(store, interval=0.01)  # type: ignore[arg-type]
    store.fail = True
    counter.record("a")
    counter.record("a")
    with pytest.raises(StorageUnavailable):
        await counter.flush()
    assert counter.pending == 2 and counter.lag() >= 0
    counter.record("a")
    store.fail = False
    await counter.flush()
    assert store.written == {"a": 3}
    assert counter.pending == 0 and counter.lag() == 0


async def test_a_cancelled_write_puts_its_batch_back() -> None:
    store = SlowStore(delay=1.0)
    counter = VisitCounter(store)  # type: ignore[arg-type]
    counter.record("a")
    task = asyncio.create_task(counter.flush())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert counter.pending == 1
