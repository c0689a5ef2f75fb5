"""Ports: the small interfaces the service layer needs from storage and caches.

Adapters implement them (`snip.adapters`); tests may swap in fakes. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from snip.domain.links import Link, LinkQuery, RedirectTarget


class DuplicateKey(Exception):
    """An insert hit a unique key; `field` names it (`code` or `reuse_key`)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Link]
    total: int


class LinkRepository(Protocol):
    """Where links live. Every method is one short transaction; unique keys do the locking."""

    async def add(self, link: Link) -> Link:
        """Insert `link`; raise `DuplicateKey` if its code or reuse key is taken."""

    async def get(self, code: str) -> Link | None: ...

    async def get_target(self, code: str) -> RedirectTarget | None:
        """What the redirect needs of a link, read as cheaply as storage allows."""

    async def get_by_reuse_key(self, key: str) -> Link | None: ...

    async def list(self, query: LinkQuery) -> Page: ...

    async def update(self, code: str, changes: Mapping[str, Any]) -> Link | None:
        """Apply `changes` (field → value, tags as a tuple) and return the new link, or None."""

    async def delete(self, code: str) -> bool: ...

    async def take_visit(self, code: str) -> bool:
        """Atomically count one visit if the link is under its limit; False when it is not."""

    async def count_visits(self, code: str) -> int | None: ...

    async def add_visits(self, counts: Mapping[str, int]) -> None:
        """Add buffered visit counts, one batch."""

    async def ping(self) -> None:
        """Raise if storage cannot be reached."""

    async def stats(self) -> tuple[int, int | None]:
        """(links stored, size on disk in bytes or None if unknown)."""


class Miss(enum.Enum):
    """Returned by `RedirectCache.get` when the cache knows nothing about a code."""

    MISS = "miss"


MISS: Final = Miss.MISS


class RedirectCache(Protocol):
    """The redirect's cache: code → target, or a negative entry (None) for unknown codes."""

    def get(self, code: str) -> RedirectTarget | Miss | None:
        """Return the target, None for a known-unknown code, or `MISS`."""

    def put(self, code: str, target: RedirectTarget | None) -> None: ...

    def invalidate(self, code: str) -> None: ...

    def clear(self) -> None: ...




@dataclass(frozen=True, slots=True)
class Decision:
    """A rate limiter's answer for one request (RFC draft RateLimit-* header values)."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window frees capacity again
    retry_after: int  # seconds to wait when not allowed (0 when allowed)


class RateLimiter(Protocol):
    """Counts requests per key in a window; in-process, or in Redis so limits hold across hosts."""

    async def hit(self, key: str) -> Decision:
        """Count one request for `key` and say whether it is within the limit."""


class SharedCache(Protocol):
    """A cache tier shared by every process (Redis), which also tells the others of changes.

    It never raises: when its store is unavailable, `get` misses and `put` does nothing.
    """

    async def get(self, code: str) -> RedirectTarget | Miss | None: ...

    async def put(self, code: str, target: RedirectTarget | None) -> None: ...

    async def invalidate(self, code: str) -> None:
        """Drop `code` here and in every process's first tier."""

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
