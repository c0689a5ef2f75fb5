"""The visit tally: with click tracking off, a redirect adds one to an in-memory count per code.

A drop-in for `ClickRecorder` when SNIP_TRACK_CLICKS=false: nothing about a request is kept but
its code, so there is no `Click` to build and no queue to bound. `record()` is one dict update;
a background task swaps the dict out every `interval` seconds and writes the aggregated counts
through a `VisitStore` (the sharded link counters: one upsert row per link visited, not per
visit).

Guarantees (those of `ClickRecorder`, where they apply):
- a failed write merges its counts back for the next try, so no visit is lost; so does a write
  cancelled midway;
- one writer at a time: concurrent `flush()` calls never write the same counts twice;
- `close()` lets a write in progress finish, then writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from time import time
from typing import Any, Protocol

from snip.service_layer.writing import keep_writing, write_all

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0  # seconds between tries while storage is failing, at most


class VisitStore(Protocol):
    """Where aggregated visits go: the link counters."""

    async def add_visits(self, counts: Sequence[tuple[str, int]]) -> None:
        """Add `n` visits to each `code` of `counts` (sorted by code), in one transaction."""


class VisitTally:
    """Visits per code, counted in memory and written in aggregate by a background task."""

    def __init__(self, store: VisitStore, *, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._counts: dict[str, int] = {}
        self._since: float | None = None  # when the oldest visit in `_counts` was counted
        self._writing_n = 0  # visits in the write in progress
        self._writing_since: float | None = None
        self._writing = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # visits handed to the store

    # -- the hot path ----------------------------------------------------------------------

    def record(self, code: str, scope: dict[str, Any], counted: bool) -> None:
        """Count one visit: a GET that counts (HEAD only looks; a link with a visit limit has
        taken its visit already). Never waits, never raises."""
        if counted and scope.get("method", "GET") == "GET":
            counts = self._counts
            if not counts:
                self._since = time()
            counts[code] = counts.get(code, 0) + 1

    # -- state, for metrics ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Visits counted and not yet written (in memory, or in the write in progress)."""
        return sum(self._counts.values()) + self._writing_n

    @property
    def dropped(self) -> int:
        """Always 0: the tally holds one entry per link visited, bounded by the number of
        links, so there is never a reason to refuse a visit."""
        return 0

    def lag(self) -> float:
        """Seconds since the oldest visit not yet written was counted (0 when none is)."""
        oldest = self._writing_since if self._writing_since is not None else self._since
        if oldest is None or not (self._writing_n or self._counts):
            return 0.0
        return max(0.0, time() - oldest)

    # -- writing ---------------------------------------------------------------------------

    def _merge_back(self, counts: dict[str, int], since: float | None) -> None:
        """Return the counts of a failed write to the tally (visits counted meanwhile kept)."""
        current = self._counts
        for code, n in counts.items():
            current[code] = current.get(code, 0) + n
        if since is not None and (self._since is None or since < self._since):
            self._since = since

    async def flush(self) -> None:
        """Write every visit counted so far; raises if the write fails (the counts are kept).

        One writer at a time: a flush called while the background task writes waits for it,
        then writes what was counted meanwhile, so no count is written twice.
        """
        async with self._writing:
            counts, since = self._counts, self._since
            if not counts:
                return
            self._counts, self._since = {}, None
            total = sum(counts.values())
            self._writing_n, self._writing_since = total, since
            try:
                await self._store.add_visits(sorted(counts.items()))
            except BaseException:
                # Failed, or cancelled midway (its transaction rolled back): keep the counts.
                # (A cancel landing after the COMMIT itself succeeded would count them again:
                # close() never cancels a write, it waits for it.)
                self._merge_back(counts, since)
                raise
            else:
                self.written += total
            finally:
                self._writing_n, self._writing_since = 0, None

    async def _run(self) -> None:
        await keep_writing(self.flush, what="visits", pending=lambda: self.pending,
                           stopping=self._stopping, next_delay=lambda: self._interval, log=log,
                           max_backoff=max(MAX_BACKOFF, self._interval))

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="visits")

    async def close(self, *, tries: int = 3) -> None:
        """Stop the loop without cutting a write short, then write what is left."""
        if self._task is not None:
            self._stopping.set()
            await self._task  # a write in progress finishes (its transaction too)
            self._task = None
        await write_all(self.flush, what="visits", pending=lambda: self.pending, log=log,
                        tries=tries)
