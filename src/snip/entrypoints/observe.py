"""Request observation for the framework routes: request ids, metrics by route template, access log.

The redirect hot path records the same things inline (`redirect.py`); this middleware wraps
everything else. Route labels are templates (`/api/v1/links/{code}`), never a code.
"""

from __future__ import annotations

import itertools
import secrets
from time import perf_counter
from typing import Any

import structlog

from snip.adapters.metrics import SnipMetrics
from snip.domain.privacy import anonymize_ip

access_log = structlog.get_logger("snip.access")

MAX_REQUEST_ID = 128


class RequestIds:
    """Request ids: the caller's `X-Request-ID` if it is sane, else a cheap unique one."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4) + "-"
        self._counter = itertools.count(1)

    def of(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        for name, value in headers:
            if name == b"x-request-id":
                if _safe(value):
                    return value
                break
        return (self._prefix + format(next(self._counter), "x")).encode()


def _safe(value: bytes) -> bool:
    """Printable ASCII without spaces, and short: safe to echo in a header and a log line."""
    return 0 < len(value) <= MAX_REQUEST_ID and all(33 <= b < 127 for b in value)


def client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return anonymize_ip(client[0]) if client else None


class ObservedApp:
    """ASGI middleware: X-Request-ID in and out, request metrics, optional access log."""

    def __init__(self, app: Any, metrics: SnipMetrics | None, ids: RequestIds,
                 *, access_log_enabled: bool) -> None:
        self.app = app
        self._metrics = metrics
        self._ids = ids
        self._access = access_log_enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = self._ids.of(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id.decode()):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = perf_counter() - start
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = scope["method"]
                if self._metrics is not None:
                    m = self._metrics
                    m.http_requests.labels(template, method, str(status)).inc()
                    m.http_duration.labels(template, method).observe(elapsed)
                if self._access:
                    access_log.info("request", method=method, route=template, status=status,
                                    duration_ms=round(elapsed * 1000, 3),
                                    client=client_address(scope))
