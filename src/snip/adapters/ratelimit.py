"""Rate limiters: GCRA in one process, or in Redis (one atomic Lua script) across processes and hosts.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival time
(TAT): a rate of L per T seconds is a bucket of L requests refilled by one every T/L seconds.
A request is allowed when, after adding its cost, the TAT is at most T ahead of now. It is
exact (no approximation; L requests at once pass, the (L+1)-th does not), costs O(1) memory per
key, and gives exact `Retry-After` and `RateLimit-*` values. docs/design.md explains the choice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from time import monotonic, monotonic_ns

import redis.asyncio as redis
from redis.exceptions import RedisError

from snip.adapters.metrics import SnipMetrics
from snip.config import Settings
from snip.service_layer.limits import UNLIMITED, Limits, Rate, parse_rate
from snip.service_layer.ports import Decision, RateLimiter

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_MAX_KEYS = 100_000
BREAKER_SECONDS = 5.0
_PRUNE_PER_HIT = 4  # idle keys dropped per request at most (amortised O(1))


def _ceil_seconds(ns: int) -> int:
    return max(0, -(-ns // NS))


class MemoryRateLimiter:
    """`RateLimiter` for one process: GCRA in integers (exact), idle keys forgotten.

    Memory is bounded twice: a key whose bucket is full again is dropped (so only keys seen in
    the last period are kept), and at most `max_keys` keys are kept at all (the least recently
    seen go first). An attacker rotating addresses therefore costs a fixed amount of memory.
    """

    def __init__(self, name: str, rate: Rate, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], int] = monotonic_ns,
                 metrics: SnipMetrics | None = None) -> None:
        self.name = name
        self.rate = rate
        self._limit = rate.limit
        self._period = rate.period * NS  # T in ns; one request costs T ns in units of ns·L
        self._window = self._period * rate.limit  # T·L: how far the TAT may run ahead (ns·L)
        self._max_keys = max(1, max_keys)
        self._clock = clock
        # key → TAT in ns·L (scaled by L so that T/L never needs rounding)
        self._tat: OrderedDict[str, int] = OrderedDict()
        self._denied = metrics.rate_limited.labels(name) if metrics is not None else None

    def __len__(self) -> int:
        return len(self._tat)

    async def hit(self, key: str, cost: int = 1) -> Decision:
        return self.hit_now(key, cost)

    def hit_now(self, key: str, cost: int = 1) -> Decision:
        """`hit` without the coroutine (no await inside, so it is atomic in the event loop)."""
        now = self._clock() * self._limit
        tats = self._tat
        base = max(tats.get(key, now), now)
        new = base + cost * self._period
        if new - self._window > now:
            if self._denied is not None:
                self._denied.inc()
            return Decision(False, self._limit, self._units_left(base - now),
                            self._seconds(base - now), max(1, self._seconds(new - self._window - now)))
        tats[key] = new
        tats.move_to_end(key)
        for _ in range(_PRUNE_PER_HIT):
            oldest, tat = next(iter(tats.items()))
            if tat > now and len(tats) <= self._max_keys:
                break
            del tats[oldest]  # idle (its bucket is full again), or one key too many
        return Decision(True, self._limit, self._units_left(new - now), self._seconds(new - now), 0)

    def _units_left(self, used: int) -> int:
        return max(0, (self._window - used) // self._period)

    def _seconds(self, scaled_ns: int) -> int:
        return _ceil_seconds(-(-scaled_ns // self._limit))

    async def close(self) -> None:
        self._tat.clear()


# KEYS[1]: the key; ARGV: period (µs), limit, cost. Time is Redis's own clock (TIME), so hosts
# with skewed clocks share one timeline. Returns {allowed, µs the TAT is ahead of now,
# µs to wait (when refused)}. The TAT is stored to full double precision and expires as soon
# as the bucket is full again, so idle keys cost Redis nothing.
GCRA_LUA = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new = tat + cost * period / limit
if new - period > now + 1 then
  return {0, math.ceil(tat - now), math.ceil(new - period - now)}
end
redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX',
           math.ceil((new - now) / 1000) + 1)
return {1, math.ceil(new - now), 0}
"""


class RedisRateLimiter:
    """`RateLimiter` in Redis: one atomic script call per request, shared by every process.

    When Redis fails or is slow, it falls back to an in-process limiter (same rate) for a few
    seconds, logs once and counts `snip_redis_errors_total{operation="ratelimit"}`: limits
    then hold per process instead of overall, and no request fails because of Redis.
    """

    def __init__(self, name: str, rate: Rate, client: redis.Redis, *, prefix: str = "snip:",
                 max_keys: int = DEFAULT_MAX_KEYS, metrics: SnipMetrics | None = None) -> None:
        self.name = name
        self.rate = rate
        self._client = client
        self._script = client.register_script(GCRA_LUA)
        self._prefix = f"{prefix}rl:{name}:"
        self._args = (rate.period * 1_000_000, rate.limit)
        self._fallback = MemoryRateLimiter(name, rate, max_keys=max_keys, metrics=metrics)
        self._metrics = metrics
        self._denied = metrics.rate_limited.labels(name) if metrics is not None else None
        self._down_until = 0.0
        self.errors = 0

    async def hit(self, key: str, cost: int = 1) -> Decision:
        if monotonic() < self._down_until:
            return self._fallback.hit_now(key, cost)
        try:
            allowed, ahead, wait = await self._script(
                keys=[self._prefix + key], args=[*self._args, cost])
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return self._fallback.hit_now(key, cost)
        limit, period_us = self.rate.limit, self._args[0]
        remaining = max(0, int((period_us - int(ahead)) * limit // period_us))
        reset = max(0, -(-int(ahead) // 1_000_000))
        if allowed:
            return Decision(True, limit, remaining, reset, 0)
        if self._denied is not None:
            self._denied.inc()
        return Decision(False, limit, remaining, reset, max(1, -(-int(wait) // 1_000_000)))

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.redis_errors.labels("ratelimit").inc()
        if monotonic() >= self._down_until:
            log.warning("redis rate limit %s failed (%s); limiting in this process for %.0f s",
                        self.name, exc, BREAKER_SECONDS)
        self._down_until = monotonic() + BREAKER_SECONDS


# The limits snip applies: field of `Limits` → the setting that names its rate.
SETTINGS = {
    "create": "rate_limit_create",
    "anonymous_create": "rate_limit_anonymous_create",
    "not_found": "rate_limit_not_found",
    "password": "rate_limit_password",
    "password_link": "rate_limit_password_link",
    "reports": "rate_limit_reports",
}


def make_limits(settings: Settings, metrics: SnipMetrics | None = None) -> Limits:
    """Every limit from settings: in Redis when SNIP_REDIS_URL is set, else in this process."""
    limits = Limits()
    client: redis.Redis | None = None
    for name, setting in SETTINGS.items():
        rate = parse_rate(getattr(settings, setting))
        limiter: RateLimiter
        if rate is None:
            limiter = UNLIMITED
        elif settings.redis_url:
            if client is None:
                client = redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout,
                                        socket_connect_timeout=settings.redis_timeout,
                                        health_check_interval=30)
                limits.closers.append(client.aclose)
            limiter = RedisRateLimiter(name, rate, client, prefix=settings.redis_prefix,
                                       max_keys=settings.rate_limit_max_keys, metrics=metrics)
        else:
            limiter = MemoryRateLimiter(name, rate, max_keys=settings.rate_limit_max_keys,
                                        metrics=metrics)
        setattr(limits, name, limiter)
    return limits
