"""The in-process redirect cache: LRU with a TTL, and shorter-lived negative entries for unknown codes."""

from __future__ import annotations

from cachetools import TLRUCache

from snip.domain.links import RedirectTarget
from snip.service_layer.ports import MISS, Miss


class MemoryRedirectCache:
    """`RedirectCache` in one process. Each worker process has its own (see docs/design.md)."""

    def __init__(self, maxsize: int, ttl: float, negative_ttl: float) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._data: TLRUCache[str, RedirectTarget | None] = TLRUCache(
            maxsize=maxsize, ttu=self._time_to_use
        )

    def _time_to_use(self, _key: str, value: RedirectTarget | None, now: float) -> float:
        return now + (self._ttl if value is not None else self._negative_ttl)

    def get(self, code: str) -> RedirectTarget | Miss | None:
        return self._data.get(code, MISS)

    def put(self, code: str, target: RedirectTarget | None) -> None:
        if self._data.maxsize > 0:
            self._data[code] = target

    def invalidate(self, code: str) -> None:
        self._data.pop(code, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
