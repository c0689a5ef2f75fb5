"""The redirect: the hot path, a raw ASGI callable placed in front of the web framework.

`GET|HEAD /{code}` and the original design's `GET|HEAD /r/{code}` are answered here from the
in-process cache (storage on a miss), with no validation models, templates or per-request
framework objects. Everything else is passed to the framework app behind it.
"""

from __future__ import annotations

import logging
from time import time
from typing import Any

from snip.domain.codes import CUSTOM_ALPHABET, MAX_CUSTOM_CODE_LENGTH, RESERVED_WORDS
from snip.domain.errors import StorageUnavailable
from snip.domain.links import PERMANENT_STATUSES, RedirectTarget, Verdict
from snip.entrypoints.pages import GONE, NOT_FOUND, UNAVAILABLE
from snip.service_layer.links import LinkService
from snip.service_layer.ports import MISS, Miss, RedirectCache
from snip.service_layer.visits import VisitCounter

log = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Any

_HTML = (b"content-type", b"text/html; charset=utf-8")
_NO_CACHE = (b"cache-control", b"no-cache")
_EMPTY = (b"content-length", b"0")
_FOLLOW = Verdict.FOLLOW
_CODE_CHARS = frozenset(CUSTOM_ALPHABET)


def _is_code(segment: str) -> bool:
    """Could `segment` be a stored code? (Cheaper than a regex on the hot path.)"""
    return (
        0 < len(segment) <= MAX_CUSTOM_CODE_LENGTH
        and segment.isascii()
        and (segment.isalnum() or _CODE_CHARS.issuperset(segment))
        and segment not in RESERVED_WORDS
    )


class RedirectApp:
    """ASGI middleware-shaped app: redirects short codes, hands every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        service: LinkService,
        cache: RedirectCache,
        visits: VisitCounter,
        *,
        permanent_max_age: int,
    ) -> None:
        self.app = app
        self._service = service
        self._cache = cache
        self._visits = visits
        self._permanent_cache = (b"cache-control", f"private, max-age={permanent_max_age}".encode())

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

        target: RedirectTarget | Miss | None = self._cache.get(code)
        if target is MISS:
            try:
                target = await self._service.resolve(code)
            except StorageUnavailable:
                return await _page(send, method, 503, UNAVAILABLE, (b"retry-after", b"5"))
        if target is None:
            return await _page(send, method, 404, NOT_FOUND)
        if target.verdict(time()) is not _FOLLOW:
            return await _page(send, method, 410, GONE)

        if target.max_visits is not None:
            # The one synchronous step: the visit is taken atomically in storage, so the limit
            # holds exactly across workers. HEAD only looks.
            try:
                if method == "GET":
                    allowed = await self._service.take_visit(code)
                else:
                    allowed = await self._service.visits(code) < target.max_visits
            except StorageUnavailable:
                return await _page(send, method, 503, UNAVAILABLE, (b"retry-after", b"5"))
            if not allowed:
                return await _page(send, method, 410, GONE)
        elif method == "GET":
            self._visits.record(code)

        status = 302 if legacy else target.status
        headers = [(b"location", target.location.encode("ascii")), _EMPTY]
        if status in PERMANENT_STATUSES:
            headers.append(self._permanent_cache)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return None


async def _page(send: Any, method: str, status: int, body: bytes,
                *extra: tuple[bytes, bytes]) -> None:
    headers = [_HTML, _NO_CACHE, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
