"""Ports: the small interfaces the service layer needs from storage and caches.

Adapters implement them (`snip.adapters`); tests may swap in fakes. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, Protocol

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

    async def hit(self, key: str, cost: int = 1) -> Decision:
        """Count one request (`cost` units) for `key` and say whether it is within the limit."""


class SharedCache(Protocol):
    """A cache tier shared by every process (Redis), which also tells the others of changes.

    It never raises: when its store is unavailable, `get` misses and `put` does nothing.
    """

    async def get(self, code: str) -> RedirectTarget | Miss | None: ...

    async def put(self, code: str, target: RedirectTarget | None) -> None: ...

    async def invalidate(self, code: str) -> None:
        """Drop `code` here and in every process's first tier."""

    async def invalidate_many(self, codes: Iterable[str]) -> None:
        """`invalidate` for many codes, in as few round trips as the store allows."""

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""


# -- link lifecycle (issue 5): bulk import and streaming export ---------------------------------


class ImportRow(NamedTuple):
    """One validated link for a bulk insert: plain values, no per-row objects beyond this tuple."""

    code: str
    url: str
    url_digest: str
    host_key: str | None
    title: str | None
    tags: tuple[str, ...]
    owner: str
    created_at: datetime
    expires_at: datetime | None
    max_visits: int | None
    visits: int
    disabled: bool
    redirect_status: int
    password_hash: str | None
    import_key: str | None  # set for rows without a code: owner and URL make them unique
    generated: bool  # the code was drawn at random (on a clash: draw again, not skip)


@dataclass(frozen=True, slots=True)
class Inserted:
    created: int
    skipped: int  # the code or import key exists already (a re-run, or a taken custom code)
    retry: list[ImportRow]  # random codes that clashed: draw new ones and insert again


class LinkImportStore(Protocol):
    """Bulk writes and reads for `snip import` and `snip export`."""

    async def add_many(self, rows: Sequence[ImportRow]) -> Inserted:
        """Insert in one transaction, skipping rows whose code or import key exists."""

    def iter_links(self, batch: int = 1000) -> AsyncIterator[list[Link]]:
        """Every link, in id order, `batch` at a time (keyset pagination: constant memory)."""
