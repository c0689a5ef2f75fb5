"""The visit counter: counts redirects in memory and writes them in batches, off the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from time import monotonic

from snip.domain.errors import StorageUnavailable
from snip.service_layer.ports import LinkRepository

log = logging.getLogger(__name__)


class VisitCounter:
    """`record` is a dict increment; `run` flushes every `interval` seconds; `close` flushes the rest.

    A failed flush puts its counts back, so a database hiccup delays counts but loses none.
    Links with a visit limit are not counted here: they take their visit atomically in storage.
    """

    def __init__(self, repo: LinkRepository, interval: float = 1.0) -> None:
        self._repo = repo
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._oldest: float | None = None  # when the oldest unwritten visit was counted
        self.written = 0

    def record(self, code: str) -> None:
        pending = self._pending
        if not pending:
            self._oldest = monotonic()
        pending[code] = pending.get(code, 0) + 1

    def lag(self) -> float:
        """Seconds since the oldest visit not yet written was counted (0 when none is)."""
        return 0.0 if self._oldest is None or not self._pending else monotonic() - self._oldest

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        oldest, self._oldest = self._oldest, None
        try:
            await self._repo.add_visits(batch)
        except BaseException:  # a failure, or a cancellation mid-write: nothing is dropped
            if not self._pending:
                self._oldest = oldest
            for code, n in batch.items():
                self._pending[code] = self._pending.get(code, 0) + n
            raise
        self.written += sum(batch.values())

    async def _run(self) -> None:
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            if self._stopping.is_set():
                return
            try:
                await self.flush()
            except StorageUnavailable:
                if not failing:  # one line per outage, not one per interval
                    log.warning("visit counts cannot be written (database unavailable); "
                                "kept in memory, %d pending", self.pending)
                failing = True
            except Exception:
                log.exception("visit flush failed; counts kept for the next try")
                failing = True
            else:
                if failing:
                    log.info("visit counts written again after a failure")
                failing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="visit-counter")

    async def close(self) -> None:
        """Stop the loop without cutting a write short, then write what is left."""
        if self._task is not None:
            self._stopping.set()
            await self._task  # a flush in progress finishes (its transaction too)
            self._task = None
        await self.flush()
