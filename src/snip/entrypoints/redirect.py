"""The redirect: the hot path, a raw ASGI callable placed in front of the web framework.

`GET|HEAD /{code}` and the original design's `GET|HEAD /r/{code}` are answered here from the
in-process cache (storage on a miss), with no validation models, templates or per-request
framework objects. Everything else is passed to the framework app behind it.
"""

from __future__ import annotations

import logging
from time import perf_counter, time
from typing import Any

from snip.adapters.metrics import SnipMetrics
from snip.domain.codes import RESERVED_WORDS, looks_like_code
from snip.domain.errors import StorageUnavailable
from snip.domain.links import PERMANENT_STATUSES, RedirectTarget, Verdict
from snip.entrypoints.observe import RequestIds, access_log, client_address
from snip.entrypoints.pages import BLOCKED, GONE, NOT_FOUND, TOO_MANY, UNAVAILABLE
from snip.service_layer.clicks import ClickCapture
from snip.service_layer.links import LinkService
from snip.service_layer.ports import MISS, Decision, Miss, RateLimiter, RedirectCache

log = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Any

_HTML = (b"content-type", b"text/html; charset=utf-8")
_NO_CACHE = (b"cache-control", b"no-cache")
_EMPTY = (b"content-length", b"0")
_FOLLOW = Verdict.FOLLOW


def _is_code(segment: str) -> bool:
    """Could `segment` be a stored code, and not one of snip's own routes?"""
    return looks_like_code(segment) and segment not in RESERVED_WORDS


class RedirectApp:
    """ASGI middleware-shaped app: redirects short codes, hands every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        service: LinkService,
        cache: RedirectCache,
        clicks: ClickCapture,
        *,
        permanent_max_age: int,
        metrics: SnipMetrics | None,
        ids: RequestIds,
        access_log_enabled: bool = False,
        not_found_limiter: RateLimiter | None = None,
        limit_key: Any = None,
    ) -> None:
        self.app = app
        self._service = service
        self._cache = cache
        # Every redirect served is a click: appended to an in-memory queue, written off the path.
        self._record: Any = clicks.record
        self._permanent_cache = (b"cache-control", f"private, max-age={permanent_max_age}".encode())
        self._metrics = metrics
        self._ids = ids
        self._access = access_log_enabled
        # Unknown codes are rate-limited per client address, against enumeration.
        self._not_found_limiter = not_found_limiter
        # scope → limiter key (the client address, trusted proxies honoured; entrypoints.limits)
        self._limit_key = limit_key or (lambda scope: client_address(scope) or "-")
        # (route, method, status) → (request counter, latency histogram), made on first use.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        if metrics is not None:
            self._outcomes = {o: metrics.redirects.labels(o) for o in OUTCOMES}
            self._memory_hit = metrics.cache_requests.labels("memory", "hit")
            self._memory_miss = metrics.cache_requests.labels("memory", "miss")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/r/"):
            code, legacy = path[3:], True
        else:
            code, legacy = path[1:], False
        if not _is_code(code):
            await self.app(scope, receive, send)
            return

        start = perf_counter()
        status, outcome, headers, body = await self._answer(code, method, legacy, scope)
        if outcome == "protected":  # a password form, served by the app behind
            await self.app(scope, receive, send)
            return
        headers.append((b"x-request-id", self._ids.of(scope["headers"])))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

        if self._metrics is not None:
            route = "/r/{code}" if legacy else "/{code}"
            children = self._children.get((route, method, status))
            if children is None:
                children = self._children[(route, method, status)] = (
                    self._metrics.http_requests.labels(route, method, str(status)),
                    self._metrics.http_duration.labels(route, method),
                )
            children[0].inc()
            children[1].observe(perf_counter() - start)
            self._outcomes[outcome].inc()
        if self._access:
            access_log.info("request", method=method, route="/r/{code}" if legacy else "/{code}",
                            status=status, duration_ms=round((perf_counter() - start) * 1000, 3),
                            client=client_address(scope))

    async def _answer(self, code: str, method: str, legacy: bool, scope: Scope
                      ) -> tuple[int, str, list[tuple[bytes, bytes]], bytes]:
        """Decide the response: (status, outcome, headers, body)."""
        target: RedirectTarget | Miss | None = self._cache.get(code)
        outcome = "hit"
        if target is MISS:
            if self._metrics is not None:
                self._memory_miss.inc()
            outcome = "miss"
            try:
                target = await self._service.resolve(code)
            except StorageUnavailable:
                return 503, "unavailable", _page(UNAVAILABLE, _RETRY), UNAVAILABLE
        elif self._metrics is not None:
            self._memory_hit.inc()
        if target is None:
            if self._not_found_limiter is not None:
                decision = await self._not_found_limiter.hit(self._limit_key(scope))
                if not decision.allowed:
                    return 429, "rate_limited", _page(TOO_MANY, *_limit_headers(decision)), \
                        TOO_MANY
                return 404, "not_found", _page(NOT_FOUND, *_limit_headers(decision)[1:]), \
                    NOT_FOUND
            return 404, "not_found", _page(NOT_FOUND), NOT_FOUND
        if target.verdict(time()) is not _FOLLOW:
            return 410, "gone", _page(GONE), GONE
        if target.blocked:
            return 403, "blocked", _page(BLOCKED), BLOCKED
        if target.protected:
            return 0, "protected", [], b""

        if target.max_visits is not None:
            # The one synchronous step: the visit is taken atomically in storage, so the limit
            # holds exactly across workers. HEAD only looks.
            try:
                if method == "GET":
                    allowed = await self._service.take_visit(code)
                else:
                    allowed = await self._service.visits(code) < target.max_visits
            except StorageUnavailable:
                return 503, "unavailable", _page(UNAVAILABLE, _RETRY), UNAVAILABLE
            if not allowed:
                return 410, "gone", _page(GONE), GONE
            self._record(code, scope, False)  # for analytics; the visit is already counted
        else:
            self._record(code, scope, True)  # a GET adds a visit in the writer; HEAD does not

        status = 302 if legacy else target.status
        headers = [(b"location", target.location.encode("ascii")), _EMPTY]
        if status in PERMANENT_STATUSES:
            headers.append(self._permanent_cache)
        return status, outcome, headers, b""


OUTCOMES = ("hit", "miss", "not_found", "gone", "unavailable", "blocked", "protected",
            "rate_limited")
_RETRY = (b"retry-after", b"5")


def _limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(decision.retry_after).encode()),
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(decision.reset).encode())]


def _page(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """Headers for one of the prebuilt HTML pages (404, 410, 503)."""
    return [_HTML, _NO_CACHE, (b"content-length", str(len(body)).encode()), *extra]
