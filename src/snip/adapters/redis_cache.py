"""The shared cache tier in Redis, and cross-process invalidation over Redis pub/sub.

Every worker keeps its own in-process cache (the first tier). Redis is the second tier,
shared by all workers and hosts, and the channel on which a change made in one process
reaches every other process's first tier. Redis is never required: when it is down or slow,
lookups fall through to the database, a circuit breaker stops asking Redis for a few
seconds, and invalidations that could not be sent are retried once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from time import monotonic, perf_counter
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from snip.adapters.metrics import SnipMetrics
from snip.domain.links import RedirectTarget
from snip.service_layer.ports import MISS, Miss

log = logging.getLogger(__name__)

NEGATIVE = b"-"
BREAKER_SECONDS = 5.0
REPEAT_AFTER = 1.0
INVALIDATE_CHUNK = 1000  # codes per pipeline: one round trip each, bounded request size


def _encode(target: RedirectTarget | None) -> bytes:
    if target is None:
        return NEGATIVE
    return json.dumps(
        [target.location, target.status, target.expires_at, target.max_visits, target.disabled,
         target.protected, target.blocked],
        separators=(",", ":"),
    ).encode()


def _decode(code: str, raw: bytes) -> RedirectTarget | None:
    if raw == NEGATIVE:
        return None
    fields = json.loads(raw)
    location, status, expires_at, max_visits, disabled = fields[:5]
    # Entries written before the two flags existed read as neither protected nor blocked.
    protected, blocked = fields[5:7] if len(fields) >= 7 else (False, False)
    return RedirectTarget(code=code, location=location, status=status, expires_at=expires_at,
                          max_visits=max_visits, disabled=disabled, protected=protected,
                          blocked=blocked)


class RedisSharedCache:
    """`SharedCache` on Redis: get/put with a TTL, invalidate = DEL + PUBLISH."""

    def __init__(self, url: str, *, ttl: float, negative_ttl: float, timeout: float,
                 prefix: str = "snip:", metrics: SnipMetrics | None = None) -> None:
        self._client: redis.Redis = redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._keys = prefix + "link:"
        self._channel = prefix + "invalidate"
        self._ttl_ms = int(ttl * 1000)
        self._negative_ttl_ms = max(1, int(negative_ttl * 1000))
        self._down_until = 0.0
        self._unsent: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        self.errors = 0

    # -- health ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return monotonic() >= self._down_until

    def _observe(self, operation: str, start: float) -> None:
        if self._metrics is not None:
            self._metrics.redis_duration.labels(operation).observe(perf_counter() - start)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.redis_errors.labels(what).inc()
        if self.available:
            log.warning("redis %s failed (%s); using the database for %.0f s", what, exc,
                        BREAKER_SECONDS)
        self._down_until = monotonic() + BREAKER_SECONDS

    async def ping(self) -> None:
        await self._client.ping()

    # -- the second tier -------------------------------------------------------------------

    async def get(self, code: str) -> RedirectTarget | Miss | None:
        if not self.available:
            return MISS
        start = perf_counter()
        try:
            raw = await self._client.get(self._keys + code)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return MISS
        self._observe("get", start)
        if self._metrics is not None:
            self._metrics.cache_requests.labels("redis", "miss" if raw is None else "hit").inc()
        if raw is None:
            return MISS
        return _decode(code, raw.encode() if isinstance(raw, str) else raw)

    async def put(self, code: str, target: RedirectTarget | None) -> None:
        if not self.available:
            return
        ttl = self._ttl_ms if target is not None else self._negative_ttl_ms
        start = perf_counter()
        try:
            await self._client.set(self._keys + code, _encode(target), px=ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)
            return
        self._observe("set", start)

    async def invalidate(self, code: str) -> None:
        """Drop `code` from Redis and from every process's first tier; retried if Redis is down.

        A second invalidation follows a moment later: a process that read the old row just
        before the change may otherwise write it back into Redis after the first one.
        """
        await self.invalidate_many((code,))

    async def invalidate_many(self, codes: Iterable[str]) -> None:
        """`invalidate` for many codes at once (a blocked domain): pipelined, one repeat."""
        batch = set(codes)
        if not batch:
            return
        self._unsent.update(batch)
        await self._send_invalidations()
        asyncio.get_running_loop().call_later(REPEAT_AFTER, self._repeat, batch)

    def _repeat(self, codes: set[str]) -> None:
        self._unsent.update(codes)
        task = asyncio.get_running_loop().create_task(self._send_invalidations())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_invalidations(self) -> None:
        if not self._unsent:
            return
        pending = sorted(self._unsent)
        for i in range(0, len(pending), INVALIDATE_CHUNK):
            codes = pending[i:i + INVALIDATE_CHUNK]
            start = perf_counter()
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.delete(*[self._keys + c for c in codes])
                    for code in codes:
                        pipe.publish(self._channel, code)
                    await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("invalidate", exc)
                return
            self._observe("invalidate", start)
            self._unsent.difference_update(codes)

    # -- listening for other processes' changes --------------------------------------------

    def listen(self, on_invalidate: Callable[[str], None], on_reconnect: Callable[[], None]
               ) -> None:
        """Start a task that calls `on_invalidate(code)` for every change any process publishes.

        After a lost subscription, messages may have been missed: `on_reconnect` is called
        (the first tier is cleared) once the subscription is back.
        """
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(on_invalidate, on_reconnect), name="redis-invalidations")

    async def _listen(self, on_invalidate: Callable[[str], None],
                      on_reconnect: Callable[[], None]) -> None:
        backoff = 0.5
        first = True
        while True:
            pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if not first:
                    log.info("redis subscription restored; clearing the in-process cache")
                    on_reconnect()
                first = False
                backoff = 0.5
                await self._send_invalidations()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        on_invalidate(message["data"].decode())
                    elif self._unsent:
                        await self._send_invalidations()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost, Redis restarted, ...
                first = False
                self._failed("subscription", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        await self._send_invalidations()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._client.aclose()
