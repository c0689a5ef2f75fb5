"""Rate limits on the web: whom a limit counts (API key or client address), the FastAPI
dependencies that apply limits to routes, and `RateLimit-*` headers on allowed responses too.

A client address is the one `ClientAddresses` resolves (the socket peer, or the client named
by a trusted proxy), never the anonymised one; an IPv6 client counts by its /64, since one
host is usually given a whole /64 and could otherwise rotate through 2^64 addresses.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from fastapi import Depends, Request

from snip.config import Settings
from snip.domain.accounts import Actor
from snip.domain.errors import RateLimited
from snip.entrypoints.auth import Creator
from snip.entrypoints.clients import ClientAddresses, parse_networks
from snip.service_layer.limits import Limits, Rate
from snip.service_layer.ports import Decision, RateLimiter

STATE = "ratelimit"  # request.state entry: the Decision whose headers the response carries
IPV6_PREFIX = 64


def client_key(address: str | None) -> str:
    """The limiter key for a client address: IPv4 as is, IPv6 as its /64 network."""
    if address is None:
        return "-"  # no address known (a Unix socket): such clients share one key
    if ":" not in address:
        return address
    try:
        network = ipaddress.IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False)
    except ValueError:
        return address
    return f"{network.network_address}/{IPV6_PREFIX}"


class ClientKeys:
    """`scope` → limiter key of its client, honouring trusted proxies (`SNIP_TRUSTED_PROXIES`)."""

    def __init__(self, addresses: ClientAddresses) -> None:
        self._addresses = addresses

    def __call__(self, scope: Any) -> str:
        return client_key(self._addresses.of(scope))


def client_keys(settings: Settings) -> ClientKeys:
    return ClientKeys(ClientAddresses(parse_networks(settings.trusted_proxies)))


_DEFAULT_KEYS = ClientKeys(ClientAddresses())


def headers(decision: Decision) -> dict[str, str]:
    """`RateLimit-*` for an allowed request (a refused one also gets `Retry-After`)."""
    found = {"RateLimit-Limit": str(decision.limit),
             "RateLimit-Remaining": str(decision.remaining),
             "RateLimit-Reset": str(decision.reset)}
    if not decision.allowed:
        found["Retry-After"] = str(decision.retry_after)
    return found


class RateLimitHeaders:
    """ASGI middleware: adds `RateLimit-*` of the request's limit (if any) to its response.

    Routes return their own responses (JSON, HTML pages), so the dependency that counted the
    request leaves its Decision in `request.state` and the headers are added here, on the way
    out. A refused request raises `RateLimited` instead, whose 429 carries the headers itself.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                decision = state.get(STATE)
                if decision is not None:
                    present = {name.lower() for name, _ in message.get("headers", ())}
                    extra = [(k.lower().encode(), v.encode()) for k, v in headers(decision).items()
                             if k.lower().encode() not in present]
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _limits(request: Request) -> Limits | None:
    snip = getattr(request.app.state, "snip", None)
    return getattr(snip, "limits", None)


def key_of(request: Request) -> str:
    """This request's client as a limiter key (IPv6 by /64; trusted proxies honoured)."""
    keys: ClientKeys = getattr(request.app.state, "client_keys", _DEFAULT_KEYS)
    return keys(request.scope)


def _remember(request: Request, decision: Decision) -> None:
    """Keep the tightest limit this request passed, for the response's `RateLimit-*` headers."""
    if decision.limit <= 0:
        return  # the limit is off: no headers
    seen: Decision | None = request.scope.setdefault("state", {}).get(STATE)
    if seen is None or decision.remaining < seen.remaining:
        request.scope["state"][STATE] = decision


async def charge(request: Request, limiter: RateLimiter, key: str, what: str, *,
                 cost: int = 1) -> Decision:
    """Count `cost` against `limiter` for `key`; raise `RateLimited` (429) when over the limit.

    `what` ends the sentence "Too many ..." in the problem's detail.
    """
    decision = await limiter.hit(key, cost)
    if not decision.allowed:
        raise RateLimited(f"Too many {what}: at most {decision.limit} per "
                          f"{_period(limiter)}. Retry in {decision.retry_after} s.",
                          limit=decision.limit, remaining=decision.remaining,
                          reset=decision.reset, retry_after=decision.retry_after)
    _remember(request, decision)
    return decision


def _period(limiter: RateLimiter) -> str:
    rate: Rate | None = getattr(limiter, "rate", None)
    if rate is None:
        return "period"
    return re.sub(r"^(\d+)", r"\1 ", str(rate).partition("/")[2])  # "15minutes" → "15 minutes"


async def charge_creation(request: Request, actor: Actor, cost: int = 1) -> None:
    """Count `cost` links created by `actor`: per API key, or per client address without one.

    The system actor (CLI, internal jobs) is never limited. A bulk request of N links costs N;
    more links than the whole limit can never pass, and say so instead of a useless retry.
    """
    limits = _limits(request)
    if limits is None or actor.role == "system":
        return
    if actor.is_anonymous:
        limiter, key = limits.anonymous_create, key_of(request)
        what = "links created from this address"
    else:
        limiter = limits.create
        key = f"key:{actor.key_id}" if actor.key_id is not None else f"user:{actor.name}"
        what = "links created with this API key"
    rate: Rate | None = getattr(limiter, "rate", None)
    if rate is not None and cost > rate.limit:
        raise RateLimited(f"{cost} links in one request exceed the creation limit of {rate}: "
                          f"send at most {rate.limit} at a time.", limit=rate.limit,
                          remaining=0, reset=rate.period, retry_after=rate.period)
    await charge(request, limiter, key, what, cost=cost)


async def limit_creation(request: Request, actor: Creator) -> None:
    """Dependency for routes that create one link (POST /api/v1/links, /shorten).

    It depends on `Creator`, so a caller who may not create at all gets 401/403, not 429.
    """
    await charge_creation(request, actor)


async def password_attempt(request: Request, code: str) -> None:
    """Count one password attempt on `code`: per client address, then per link (429 if over)."""
    limits = _limits(request)
    if limits is None:
        return
    await charge(request, limits.password, key_of(request),
                 "password attempts from this address")
    await charge(request, limits.password_link, code, "password attempts on this link")


async def unknown_code(request: Request) -> None:
    """Count a request for an unknown code (as the redirect does) on routes other than the
    redirect that tell known codes from unknown ones (the preview `/{code}+`): 429 if over."""
    limits = _limits(request)
    if limits is not None:
        await charge(request, limits.not_found, key_of(request),
                     "requests for unknown links from this address")


async def limit_reports(request: Request) -> None:
    """Dependency for POST /api/v1/reports: reports per client address."""
    limits = _limits(request)
    if limits is not None:
        await charge(request, limits.reports, key_of(request), "reports from this address")


# For a rate-limited route's `responses=` (problems.document gives it the problem schema).
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Rate limited: retry after `Retry-After` seconds (see the "
                         "`RateLimit-*` headers)"},
}
CreationLimit = Annotated[None, Depends(limit_creation)]
ReportLimit = Annotated[None, Depends(limit_reports)]
