"""Rate limits: the `Rate` a setting names ("60/minute"), and the named limiters snip applies.

Parsing is plain Python (used by `snip.config` to validate `SNIP_RATE_LIMIT_*`); the limiters
themselves are adapters (`snip.adapters.ratelimit`, in-process or Redis), wired in bootstrap.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from snip.service_layer.ports import Decision, RateLimiter

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour",
            "d": "day"}
OFF = frozenset({"off", "0", "none", "false", "no", "unlimited", ""})
MAX_LIMIT = 1_000_000
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per\s+)\s*(\d+)?\s*([a-z]+?)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests per `period` seconds (a bucket of `limit`, refilled evenly)."""

    limit: int
    period: int

    def __str__(self) -> str:
        for unit, seconds in sorted(UNITS.items(), key=lambda u: -u[1]):
            if self.period % seconds == 0:
                count = self.period // seconds
                return f"{self.limit}/{unit}" if count == 1 else f"{self.limit}/{count}{unit}s"
        return f"{self.limit}/{self.period}seconds"  # pragma: no cover (seconds always divide)


def parse_rate(text: str) -> Rate | None:
    """`"60/minute"` → Rate(60, 60); `"100/15minutes"`, `"5 per hour"`, `"10/s"` also work.

    `"off"` or `"0"` (or empty) → None: this limit is switched off. Anything else raises
    ValueError saying what is accepted.
    """
    if text.strip().lower() in OFF:
        return None
    match = _RATE.match(text)
    unit = _ALIASES.get(match.group(3).lower(), match.group(3).lower()) if match else ""
    if match is None or unit not in UNITS:
        raise ValueError(f"not a rate: {text!r}; write N/second, N/minute, N/hour or N/day "
                         "(e.g. 60/minute, 100/15minutes), or 'off'")
    limit, count = int(match.group(1)), int(match.group(2) or 1)
    if limit == 0:
        return None
    if limit > MAX_LIMIT or count == 0:
        raise ValueError(f"not a usable rate: {text!r}; write N/second, N/minute, N/hour or "
                         f"N/day with N from 1 to {MAX_LIMIT} (or 'off')")
    return Rate(limit, count * UNITS[unit])


class NoLimit:
    """A limit that is switched off: every request is allowed, no headers are sent."""

    rate: Rate | None = None

    async def hit(self, key: str, cost: int = 1) -> Decision:
        return Decision(True, 0, 0, 0, 0)

    async def close(self) -> None:
        return None


UNLIMITED = NoLimit()


@dataclass
class Limits:
    """The limiters snip applies; each is switched off (`NoLimit`) when its setting is "off".

    Keys are chosen by the caller: an API key id, or a client address (IPv6 by its /64).
    """

    create: RateLimiter = UNLIMITED  # link creation per API key
    anonymous_create: RateLimiter = UNLIMITED  # link creation without a key, per client address
    not_found: RateLimiter = UNLIMITED  # unknown codes on the redirect, per client address
    password: RateLimiter = UNLIMITED  # password attempts per client address (all links)
    password_link: RateLimiter = UNLIMITED  # password attempts per link (all addresses)
    reports: RateLimiter = UNLIMITED  # abuse reports per client address
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)

    async def close(self) -> None:
        for close in self.closers:
            await close()


def enabled(limiter: RateLimiter) -> RateLimiter | None:
    """`limiter`, or None when it is switched off (so a hot path can skip it entirely)."""
    return None if isinstance(limiter, NoLimit) else limiter
