"""The click recorder: batches, retries, a bounded queue, and nothing lost when the process stops.

(The guarantees of the visit counter it replaced, ported: a failed or cancelled write keeps its
batch; close() during a write loses nothing.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest

from snip.domain.clicks import Click
from snip.domain.errors import StorageUnavailable
from snip.service_layer.clicks import ClickRecorder


class SlowStore:
    """Stands in for the database: writes take a while and can be made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.fail = False
        self.stored: dict[str, Click] = {}
        self.writes = 0
        self.sizes: list[int] = []

    async def write(self, batch: Sequence[Click]) -> int:
        self.writes += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StorageUnavailable("down")
        self.sizes.append(len(batch))
        new = [c for c in batch if c.id not in self.stored]
        self.stored.update((c.id, c) for c in new)
        return len(new)

    def per_code(self) -> dict[str, int]:
        return dict(Counter(c.code for c in self.stored.values()))


def scope(method: str = "GET") -> dict[str, object]:
    return {"method": method, "client": ("192.0.2.7", 5000),
            "headers": [(b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")]}


async def test_close_during_a_write_loses_nothing() -> None:
    store = SlowStore(delay=0.2)
    recorder = ClickRecorder(store, batch_age=0.01)
    recorder.start()
    for _ in range(100):
        recorder.record("a", scope(), True)
    await asyncio.sleep(0.05)  # the loop's write is now in flight
    assert store.writes == 1
    for _ in range(50):
        recorder.record("b", scope(), True)
    await recorder.close()
    assert store.per_code() == {"a": 100, "b": 50}
    assert recorder.pending == 0 and recorder.written == 150


async def test_failed_writes_keep_their_batch_for_the_next_try() -> None:
    store = SlowStore()
    recorder = ClickRecorder(store)
    store.fail = True
    recorder.record("a", scope(), True)
    recorder.record("a", scope(), True)
    with pytest.raises(StorageUnavailable):
        await recorder.flush()
    assert recorder.pending == 2 and recorder.lag() >= 0
    held = set(c.id for c in recorder._retry[0])
    recorder.record("a", scope(), True)
    store.fail = False
    await recorder.flush()
    assert store.per_code() == {"a": 3}
    assert held <= set(store.stored)  # retried with the same ids: a double write dedupes
    assert recorder.pending == 0 and recorder.lag() == 0


async def test_a_cancelled_write_puts_its_batch_back() -> None:
    store = SlowStore(delay=1.0)
    recorder = ClickRecorder(store)
    recorder.record("a", scope(), True)
    task = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert recorder.pending == 1
    store.delay = 0
    await recorder.flush()
    assert store.per_code() == {"a": 1}


async def test_batches_by_size_and_by_age() -> None:
    store = SlowStore()
    recorder = ClickRecorder(store, batch_size=50, batch_age=0.3)
    recorder.start()
    try:
        for _ in range(120):
            recorder.record("a", scope(), True)
        await asyncio.sleep(0.1)  # a full batch wakes the writer before the age is reached
        assert sum(store.sizes) >= 50 and max(store.sizes) <= 50
        await asyncio.sleep(0.5)  # the rest goes when its age is reached
        assert sum(store.sizes) == 120
    finally:
        await recorder.close()


async def test_a_full_queue_counts_drops_and_keeps_what_it_has() -> None:
    store = SlowStore()
    recorder = ClickRecorder(store, queue_size=10)
    for _ in range(25):
        recorder.record("a", scope(), True)
    assert recorder.pending == 10 and recorder.dropped == 15
    await recorder.flush()
    assert store.per_code() == {"a": 10} and recorder.written == 10


async def test_batches_held_for_a_retry_count_against_the_bound() -> None:
    store = SlowStore()
    store.fail = True
    recorder = ClickRecorder(store, queue_size=5, batch_size=5)
    for _ in range(5):
        recorder.record("a", scope(), True)
    with pytest.raises(StorageUnavailable):
        await recorder.flush()  # the batch is now held for a retry, not queued
    recorder.record("a", scope(), True)
    assert recorder.dropped == 1 and recorder.pending == 5


def test_record_is_cheap() -> None:
    """The hot path's share: a length check and an append (about 0.2 µs; the bound is loose for
    a busy machine, but an await, a lock or I/O would blow it)."""
    import time

    s = scope()
    best = float("inf")
    for _ in range(5):
        recorder = ClickRecorder(SlowStore(), queue_size=1_000_000, batch_size=10_000_000)
        start = time.perf_counter()
        for _ in range(20_000):
            recorder.record("a", s, True)
        best = min(best, (time.perf_counter() - start) / 20_000)
    assert best < 3e-6, f"{best * 1e6:.2f} µs a click"


async def test_a_flush_during_the_writers_flush_writes_each_batch_once() -> None:
    store = SlowStore(delay=0.1)
    recorder = ClickRecorder(store, batch_age=0.01)
    recorder.start()
    for _ in range(30):
        recorder.record("a", scope(), True)
    await asyncio.sleep(0.05)  # the background write is in flight
    await recorder.flush()  # waits for it, then writes what is left (nothing)
    assert store.writes == 1 and store.per_code() == {"a": 30}
    await recorder.close()
    assert store.writes == 1 and recorder.written == 30


class RefusingStore(SlowStore):
    """Storage that answers, but refuses one click it can never take (a bad row)."""

    async def write(self, batch: Sequence[Click]) -> int:
        if any(c.code == "poison" for c in batch):
            self.writes += 1
            raise ValueError("value too long")
        return await super().write(batch)


async def test_a_batch_storage_keeps_refusing_is_dropped_and_counted() -> None:
    store = RefusingStore()
    recorder = ClickRecorder(store, batch_size=2)
    recorder.record("poison", scope(), True)
    recorder.record("a", scope(), True)
    recorder.record("b", scope(), True)
    for _ in range(5):
        with pytest.raises(ValueError, match="too long"):
            await recorder.flush()
    assert recorder.dropped == 2 and recorder.pending == 1  # not silent; the rest goes on
    await recorder.flush()
    assert store.per_code() == {"b": 1}


async def test_unavailable_storage_never_drops_a_batch() -> None:
    store = SlowStore()
    store.fail = True
    recorder = ClickRecorder(store)
    recorder.record("a", scope(), True)
    for _ in range(20):
        with pytest.raises(StorageUnavailable):
            await recorder.flush()
    assert recorder.dropped == 0 and recorder.pending == 1
