"""Links and the rules that decide whether one may be followed now.

Plain Python only: the service layer, storage and web layer all speak in these types.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from snip.domain.errors import InvalidLink

REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
PERMANENT_STATUSES = frozenset({301, 308})
MAX_TITLE_LENGTH = 500
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
ANONYMOUS_OWNER = "-"


class Verdict(enum.Enum):
    """What the redirect should do with a link now."""

    FOLLOW = "follow"
    DISABLED = "disabled"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"  # its visit limit is reached

    @property
    def gone(self) -> bool:
        return self is not Verdict.FOLLOW


@dataclass(frozen=True, slots=True)
class Link:
    """A short link as stored."""

    code: str
    url: str
    created_at: datetime
    updated_at: datetime
    redirect_status: int = 302
    title: str | None = None
    tags: tuple[str, ...] = ()
    expires_at: datetime | None = None
    max_visits: int | None = None
    visits: int = 0
    disabled: bool = False
    url_digest: str = ""
    reuse_key: str | None = None
    owner: str = ANONYMOUS_OWNER
    password_hash: str | None = None  # argon2/bcrypt hash; never the password itself
    blocked: bool = False  # set when a URL checker (the blocklist) refuses the destination

    def verdict(self, now: datetime, visits: int | None = None) -> Verdict:
        """Decide whether the link may be followed at `now`, given `visits` so far."""
        return verdict(
            disabled=self.disabled,
            expires_at=self.expires_at.timestamp() if self.expires_at else None,
            max_visits=self.max_visits,
            visits=self.visits if visits is None else visits,
            now=now.timestamp(),
        )


def verdict(
    *,
    disabled: bool,
    expires_at: float | None,
    max_visits: int | None,
    visits: int,
    now: float,
) -> Verdict:
    """The one rule for following a link; times are POSIX seconds so the hot path stays cheap."""
    if disabled:
        return Verdict.DISABLED
    if expires_at is not None and now >= expires_at:
        return Verdict.EXPIRED
    if max_visits is not None and visits >= max_visits:
        return Verdict.EXHAUSTED
    return Verdict.FOLLOW


@dataclass(frozen=True, slots=True)
class RedirectTarget:
    """The part of a link the redirect needs, kept in the hot-path cache.

    `max_visits` set means the redirect must take a visit atomically in storage before
    following; links without a limit never touch storage once cached.
    """

    code: str
    location: str
    status: int
    expires_at: float | None
    max_visits: int | None
    disabled: bool
    protected: bool = False  # has a password: the redirect hands the request to the form
    blocked: bool = False  # its destination was blocked (blocklist, report): a warning page

    @classmethod
    def of(cls, link: Link) -> RedirectTarget:
        return cls(
            code=link.code,
            location=link.url,
            status=link.redirect_status,
            expires_at=link.expires_at.timestamp() if link.expires_at else None,
            max_visits=link.max_visits,
            disabled=link.disabled,
            protected=link.password_hash is not None,
            blocked=link.blocked,
        )

    def verdict(self, now: float, visits: int = 0) -> Verdict:
        return verdict(
            disabled=self.disabled,
            expires_at=self.expires_at,
            max_visits=self.max_visits,
            visits=visits,
            now=now,
        )


def url_digest(normalised_url: str) -> str:
    """The indexed digest of a normalised URL, used to find an existing link for `reuse`."""
    return hashlib.sha256(normalised_url.encode("utf-8")).hexdigest()


def reuse_key(owner: str, digest: str) -> str:
    """The unique key that makes `reuse` race-free: one reusable link per owner and URL."""
    return f"{owner}:{digest}"


def is_reusable(*, expires_at: datetime | None, max_visits: int | None, disabled: bool) -> bool:
    """Only plain, permanent links are handed out again for `reuse`; one that can run out is not."""
    return expires_at is None and max_visits is None and not disabled


def validate_redirect_status(status: int) -> int:
    if status not in REDIRECT_STATUSES:
        raise InvalidLink(f"redirect_status must be one of 301, 302, 307 or 308, not {status}")
    return status


def validate_title(title: str | None) -> str | None:
    if title is None:
        return None
    title = title.strip()
    if len(title) > MAX_TITLE_LENGTH:
        raise InvalidLink(f"title is {len(title)} characters long; the limit is {MAX_TITLE_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in title):
        raise InvalidLink("title must not contain control characters")
    return title or None


def validate_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Tags are trimmed, lower-cased, de-duplicated and kept in their given order."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise InvalidLink("tags must be a list of strings, not a single string")
    seen: dict[str, None] = {}
    for raw in tags:
        if not isinstance(raw, str):
            raise InvalidLink(f"each tag must be a string, not {type(raw).__name__}")
        tag = raw.strip().lower()
        if not tag:
            raise InvalidLink("tags must not be empty")
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidLink(f"tag '{tag[:20]}...' is longer than {MAX_TAG_LENGTH} characters")
        if any(ord(c) < 32 or ord(c) == 127 or c == "," for c in tag):
            raise InvalidLink(f"tag {tag!r} must not contain commas or control characters")
        seen[tag] = None
    if len(seen) > MAX_TAGS:
        raise InvalidLink(f"a link may carry at most {MAX_TAGS} tags, not {len(seen)}")
    return tuple(seen)


def validate_max_visits(max_visits: int | None) -> int | None:
    if max_visits is not None and max_visits < 1:
        raise InvalidLink("max_visits must be at least 1")
    if max_visits is not None and max_visits > 2**62:
        raise InvalidLink("max_visits is too large")
    return max_visits


def validate_expires_at(expires_at: datetime | None, now: datetime) -> datetime | None:
    """Expiry must carry a time zone (or is taken as UTC) and lie in the future when set."""
    if expires_at is None:
        return None
    expires_at = as_utc(expires_at)
    if expires_at <= now:
        raise InvalidLink("expires_at must lie in the future")
    return expires_at


@dataclass(slots=True)
class LinkQuery:
    """Listing options: page through links, search URL and title, filter by tag, order."""

    search: str | None = None
    tags: tuple[str, ...] = ()
    order_by: str = "created_at"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    owner: str | None = None
    # A class constant, not a field: callers must not be able to widen the allowed columns.
    ORDER_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"created_at", "updated_at", "code", "url", "title", "visits"}
    )

    def __post_init__(self) -> None:
        if self.order_by not in self.ORDER_FIELDS:
            allowed = ", ".join(sorted(self.ORDER_FIELDS))
            raise InvalidLink(f"cannot order by {self.order_by!r}; choose one of {allowed}")
        if not 1 <= self.limit <= 1000:
            raise InvalidLink("limit must be between 1 and 1000")
        if self.offset < 0:
            raise InvalidLink("offset must not be negative")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive one (SQLite hands them back, people type them) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
