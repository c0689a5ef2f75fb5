"""Distributed click recording: batches go to a Redis Stream; a consumer group writes them.

The serving processes XADD each batch (one pipelined round trip, an entry per 100 clicks) instead
of writing to the database. `snip worker` (and, by default, an embedded consumer in every
`snip serve` process) reads the stream in a consumer group, writes a batch to the database,
and XACKs (then XDELs) its entries only after the transaction committed. A consumer that dies
mid-batch leaves its entries pending; after `SNIP_CLICKS_CLAIM_IDLE` seconds another consumer
claims them (XAUTOCLAIM) and writes them again: the click ids make that second write a no-op
for clicks already stored. Delivery is at least once; storage deduplicates.

When Redis cannot be reached, the sink writes the batch to the database itself, so clicks are
neither lost nor stuck in memory while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from time import monotonic
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from snip.domain.clicks import Click
from snip.domain.errors import StorageUnavailable
from snip.service_layer.clicks import MAX_REFUSALS, ClickSink

log = logging.getLogger(__name__)

GROUP = "writers"
ENTRY_CLICKS = 100  # clicks per stream entry: one XADD per 100 clicks, not per click


def _client(url: str, timeout: float) -> redis.Redis:
    return redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
                          health_check_interval=30)


def _encode(clicks: Sequence[Click]) -> bytes:
    return json.dumps([c.to_wire() for c in clicks], separators=(",", ":")).encode()


def _decode(fields: dict[bytes, bytes]) -> list[Click]:
    return [Click.from_wire(wire) for wire in json.loads(fields[b"b"])]


class RedisClickSink:
    """`ClickSink` that XADDs to the stream, falling back to `fallback` (the database)."""

    def __init__(self, url: str, stream: str, fallback: ClickSink, *, timeout: float = 2.0,
                 maxlen: int | None = None) -> None:
        self._client = _client(url, timeout)
        self._stream = stream
        self._fallback = fallback
        self._maxlen = maxlen
        self._failing = False
        self.fallback_writes = 0

    async def write(self, batch: Sequence[Click]) -> int:
        if not batch:
            return 0
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for start in range(0, len(batch), ENTRY_CLICKS):
                    pipe.xadd(self._stream, {"b": _encode(batch[start:start + ENTRY_CLICKS])})
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("Redis unavailable for clicks (%s); writing them to the database "
                            "directly", exc)
            self._failing = True
            self.fallback_writes += len(batch)
            # Some entries may have reached the stream before the failure: the click ids make
            # the worker's later write of them a no-op.
            return await self._fallback.write(batch)
        if self._failing:
            log.info("clicks go to the Redis stream again")
            self._failing = False
        return len(batch)

    async def close(self) -> None:
        await self._client.aclose()


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamConsumer:
    """One consumer of the group: read (or claim) a batch, write it, acknowledge, repeat."""

    def __init__(self, url: str, stream: str, store: ClickSink, *, name: str | None = None,
                 batch_size: int = 500, block: float = 1.0, claim_idle: float = 30.0) -> None:
        self._client = _client(url, timeout=block + 5.0)
        self._stream = stream
        self._store = store
        self.name = name or consumer_name()
        self._count = max(1, batch_size // ENTRY_CLICKS)  # entries per read
        self._block_ms = max(1, int(block * 1000))
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._claim_every = max(0.5, claim_idle / 2)
        self._next_claim = 0.0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._task_started = False
        self._own_pending = True  # after a start or a failed write: our own pending entries first
        self.written = 0  # clicks written to the database (new ones)
        self.acked = 0  # stream entries acknowledged
        self.dropped = 0  # clicks in entries the database kept refusing
        self._refusals = 0

    async def ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, block: bool) -> list[Any]:
        """The next entries to write: ours left pending, claimed from the dead, or new."""
        if self._own_pending:
            got: Any = await self._client.xreadgroup(GROUP, self.name, {self._stream: "0"},
                                                     count=self._count)
            if got and got[0][1]:
                return list(got[0][1])
            self._own_pending = False
        if monotonic() >= self._next_claim:
            self._next_claim = monotonic() + self._claim_every
            claimed: Any = await self._client.xautoclaim(self._stream, GROUP, self.name,
                                                    self._claim_idle_ms, "0-0",
                                                    count=self._count)
            entries: list[Any] = [e for e in claimed[1] if e[1]]  # deleted ones come back empty
            if entries:
                log.info("claimed %d click entries left pending by another worker", len(entries))
                return entries
        got = await self._client.xreadgroup(GROUP, self.name, {self._stream: ">"},
                                            count=self._count,
                                            block=self._block_ms if block else None)
        return list(got[0][1]) if got else []

    async def step(self, *, block: bool = True) -> int:
        """Write one batch; how many entries it had (0: nothing to do)."""
        entries = await self._read(block)
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        batch: list[Click] = []
        for entry_id, fields in entries:
            try:
                batch.extend(_decode(fields))
            except (KeyError, ValueError, TypeError):
                log.error("dropping a malformed click entry %r", entry_id)
        try:
            self.written += await self._store.write(batch)
        except StorageUnavailable:
            self._own_pending = True  # not acknowledged: retried by us (or claimed by another)
            raise
        except BaseException as exc:
            self._own_pending = True
            if not isinstance(exc, Exception):
                raise  # cancelled: the entries stay pending
            # The database answered and refused these entries; after a few tries they are
            # dropped (logged, counted), so that one bad entry does not stop the stream.
            self._refusals += 1
            if self._refusals < MAX_REFUSALS:
                raise
            log.error("dropping %d click entries (%d clicks) the database refused %d times: %s",
                      len(ids), len(batch), MAX_REFUSALS, exc)
            self.dropped += len(batch)
        self._refusals = 0
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xack(self._stream, GROUP, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()
        self.acked += len(ids)
        return len(ids)

    async def drain(self) -> None:
        """Write everything in the stream now (no blocking); for shutdown and tests."""
        while await self.step(block=False):
            pass

    async def run(self) -> None:
        await self.ensure_group()
        failing = False
        while not self._stopping.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("click worker cannot write (%s); retrying", exc)
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
            else:
                if failing:
                    log.info("click worker writing again")
                failing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="click-worker")
            self._task_started = True

    def stop(self) -> None:
        self._stopping.set()

    async def close(self, *, drain: bool = False) -> None:
        """Stop after the batch in progress (written and acknowledged); optionally drain."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if drain and self._task_started:
            with contextlib.suppress(Exception):
                await self.drain()
        await self._client.aclose()

    async def pending(self) -> int:
        info: Any = await self._client.xpending(self._stream, GROUP)
        return int(info["pending"])
