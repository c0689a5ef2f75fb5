"""The redirect cache: LRU order, TTL, negative entries and invalidation."""

from __future__ import annotations

import pytest

from snip.adapters import memory_cache
from snip.adapters.memory_cache import MemoryRedirectCache
from snip.domain.links import RedirectTarget
from snip.service_layer.ports import MISS


def target(code: str) -> RedirectTarget:
    return RedirectTarget(code=code, location=f"https://example.com/{code}", status=302,
                          expires_at=None, max_visits=None, disabled=False)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(memory_cache, "monotonic", lambda: now[0])
    return now


def test_hit_miss_and_negative_entries(clock: list[float]) -> None:
    cache = MemoryRedirectCache(maxsize=10, ttl=60, negative_ttl=5)
    assert cache.get("a") is MISS
    cache.put("a", target("a"))
    cache.put("gone", None)
    assert cache.get("a") == target("a")
    assert cache.get("gone") is None  # known unknown, not a miss


def test_entries_expire_within_their_jittered_ttl(clock: list[float]) -> None:
    cache = MemoryRedirectCache(maxsize=10, ttl=60, negative_ttl=5)
    cache.put("a", target("a"))
    cache.put("gone", None)
    clock[0] += 5 * (1 - memory_cache.JITTER) - 0.01
    assert cache.get("gone") is None
    clock[0] += 0.02 + 5 * memory_cache.JITTER
    assert cache.get("gone") is MISS
    assert cache.get("a") == target("a")
    clock[0] += 60
    assert cache.get("a") is MISS
    assert len(cache) == 0


def test_ttls_are_spread_so_a_burst_does_not_expire_at_once(clock: list[float]) -> None:
    cache = MemoryRedirectCache(maxsize=1000, ttl=60, negative_ttl=5)
    for i in range(1000):
        cache.put(str(i), target(str(i)))
    clock[0] += 60 * (1 - memory_cache.JITTER / 2)
    alive = sum(cache.get(str(i)) is not MISS for i in range(1000))
    assert 200 < alive < 800


def test_least_recently_used_is_evicted(clock: list[float]) -> None:
    cache = MemoryRedirectCache(maxsize=2, ttl=60, negative_ttl=5)
    cache.put("a", target("a"))
    cache.put("b", target("b"))
    assert cache.get("a") is not MISS  # a is now the most recently used
    cache.put("c", target("c"))
    assert cache.get("b") is MISS
    assert cache.get("a") is not MISS and cache.get("c") is not MISS


def test_invalidate_clear_and_size_zero(clock: list[float]) -> None:
    cache = MemoryRedirectCache(maxsize=10, ttl=60, negative_ttl=5)
    cache.put("a", target("a"))
    cache.invalidate("a")
    cache.invalidate("never-there")
    assert cache.get("a") is MISS
    cache.put("b", None)
    cache.clear()
    assert cache.get("b") is MISS
    off = MemoryRedirectCache(maxsize=0, ttl=60, negative_ttl=5)
    off.put("a", target("a"))
    assert off.get("a") is MISS
