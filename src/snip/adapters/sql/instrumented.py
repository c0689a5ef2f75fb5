"""Database metrics: a `LinkRepository` that times and counts every call of the one it wraps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, TypeVar

from snip.adapters.metrics import SnipMetrics
from snip.adapters.sql.repository import SqlLinkRepository
from snip.domain.links import Link, LinkQuery, RedirectTarget
from snip.service_layer.ports import DuplicateKey, Page

T = TypeVar("T")


class InstrumentedRepository:
    """Same interface as `SqlLinkRepository`; records `snip_db_*` metrics per operation."""

    def __init__(self, inner: SqlLinkRepository, metrics: SnipMetrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self._timers: dict[str, tuple[Any, Any]] = {}  # operation → (histogram child, error counter child)
        for op in ("add", "get", "get_target", "get_by_reuse_key", "list", "update", "delete",
                   "take_visit", "count_visits", "ping", "stats"):
            self._timers[op] = (metrics.db_duration.labels(op), metrics.db_errors.labels(op))

    async def _timed(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        histogram, errors = self._timers[op]
        start = perf_counter()
        try:
            return await call()
        except Exception as exc:
            if not isinstance(exc, DuplicateKey):  # a taken code is an answer, not a fault
                errors.inc()
            raise
        finally:
            histogram.observe(perf_counter() - start)

    async def add(self, link: Link) -> Link:
        return await self._timed("add", lambda: self.inner.add(link))

    async def get(self, code: str) -> Link | None:
        return await self._timed("get", lambda: self.inner.get(code))

    async def get_target(self, code: str) -> RedirectTarget | None:
        return await self._timed("get_target", lambda: self.inner.get_target(code))

    async def get_by_reuse_key(self, key: str) -> Link | None:
        return await self._timed("get_by_reuse_key", lambda: self.inner.get_by_reuse_key(key))

    async def list(self, query: LinkQuery) -> Page:
        return await self._timed("list", lambda: self.inner.list(query))

    async def update(self, code: str, changes: Mapping[str, Any]) -> Link | None:
        return await self._timed("update", lambda: self.inner.update(code, changes))

    async def delete(self, code: str) -> bool:
        return await self._timed("delete", lambda: self.inner.delete(code))

    async def take_visit(self, code: str) -> bool:
        return await self._timed("take_visit", lambda: self.inner.take_visit(code))

    async def count_visits(self, code: str) -> int | None:
        return await self._timed("count_visits", lambda: self.inner.count_visits(code))

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping)

    async def stats(self) -> tuple[int, int | None]:
        return await self._timed("stats", self.inner.stats)
