"""Rate limits without a server: parsing rates, the in-process GCRA on a fake clock, client keys."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from snip.adapters.ratelimit import MemoryRateLimiter
from snip.config import Settings
from snip.entrypoints.limits import client_key
from snip.service_layer.limits import Rate, parse_rate

NS = 1_000_000_000


class Clock:
    """A monotonic clock in nanoseconds that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1_000 * NS

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * NS)


@pytest.mark.parametrize(("text", "rate"), [
    ("60/minute", Rate(60, 60)),
    ("10/second", Rate(10, 1)),
    ("5 per hour", Rate(5, 3600)),
    ("100/15minutes", Rate(100, 900)),
    ("1000/day", Rate(1000, 86400)),
    ("3/s", Rate(3, 1)),
    (" 7 / Minutes ", Rate(7, 60)),
])
def test_rates_are_parsed(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["off", "OFF", "0", "0/minute", "none", ""])
def test_a_limit_can_be_switched_off(text: str) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["sixty/minute", "60/fortnight", "60", "-1/minute", "60/0minutes",
                                  "1.5/second", "60/minute/hour"])
def test_a_bad_rate_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="N/minute"):
        parse_rate(text)


def test_settings_refuse_a_bad_rate_naming_the_setting() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(rate_limit_not_found="lots/minute")
    assert "rate_limit_not_found" in str(caught.value)
    assert "N/second, N/minute, N/hour or N/day" in str(caught.value)
    assert Settings(rate_limit_password="off").rate_limit_password == "off"


def test_rates_print_as_they_are_written() -> None:
    assert str(Rate(60, 60)) == "60/minute"
    assert str(Rate(100, 900)) == "100/15minutes"


async def test_exactly_the_limit_passes_at_once_then_one_per_interval() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter("t", Rate(10, 60), clock=clock)  # one refill every 6 s
    decisions = [await limiter.hit("a") for _ in range(25)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 15
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert all(d.limit == 10 for d in decisions)
    assert decisions[0].reset == 6 and decisions[9].reset == 60  # until the bucket is full
    refused = decisions[10]
    assert (refused.remaining, refused.retry_after) == (0, 6)

    clock.advance(5.9)
    assert not (await limiter.hit("a")).allowed
    clock.advance(0.1)  # exactly one interval after the 10th request
    again = await limiter.hit("a")
    assert again.allowed and again.remaining == 0
    assert not (await limiter.hit("a")).allowed

    clock.advance(60)  # a whole period: the full limit again, no more
    assert sum([(await limiter.hit("a")).allowed for _ in range(12)]) == 10


async def test_keys_are_counted_apart() -> None:
    limiter = MemoryRateLimiter("t", Rate(3, 60), clock=Clock())
    assert sum([(await limiter.hit("a")).allowed for _ in range(5)]) == 3
    assert (await limiter.hit("b")).allowed


async def test_no_window_lets_more_than_the_rate_through_over_time() -> None:
    """Over any span of t seconds at most L + t·L/T requests pass (the bucket plus its refill)."""
    clock = Clock()
    limiter = MemoryRateLimiter("t", Rate(5, 10), clock=clock)
    passed = 0
    for _ in range(1000):  # a request every 100 ms for 100 s
        passed += (await limiter.hit("a")).allowed
        clock.advance(0.1)
    assert passed in (5 + 50 - 1, 5 + 50)  # 5 at once, then one per 2 s (±1 at the edge)


async def test_a_cost_counts_several_units_and_more_than_the_limit_never_passes() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter("t", Rate(10, 60), clock=clock)
    first = await limiter.hit("a", 7)
    assert first.allowed and first.remaining == 3
    refused = await limiter.hit("a", 4)
    assert not refused.allowed and refused.remaining == 3 and refused.retry_after == 6
    assert (await limiter.hit("a", 3)).allowed
    clock.advance(3600)
    assert not (await limiter.hit("b", 11)).allowed


async def test_concurrent_hits_pass_exactly_the_limit() -> None:
    limiter = MemoryRateLimiter("t", Rate(50, 3600))
    decisions = await asyncio.gather(*(limiter.hit("a") for _ in range(400)))
    assert sum(d.allowed for d in decisions) == 50
    assert all(d.retry_after >= 1 for d in decisions if not d.allowed)


async def test_memory_stays_bounded_when_keys_rotate() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter("t", Rate(5, 60), clock=clock, max_keys=1000)
    for i in range(20_000):  # an attacker rotating addresses quickly: the cap holds
        await limiter.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 1000
    for i in range(3000):  # a slow rotation: keys idle for a period are forgotten
        await limiter.hit(f"k{i}")
        clock.advance(0.5)
    assert len(limiter) <= 60 / 0.5 + 1


async def test_a_forgotten_idle_key_starts_with_a_full_bucket_as_it_would_anyway() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter("t", Rate(2, 10), clock=clock, max_keys=10)
    assert [(await limiter.hit("a")).allowed for _ in range(3)] == [True, True, False]
    clock.advance(10)
    for i in range(5):
        await limiter.hit(f"other{i}")  # prunes "a", whose bucket is full again
    assert [(await limiter.hit("a")).allowed for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(("address", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    (None, "-"),
])
def test_ipv6_clients_are_limited_by_their_64(address: str | None, key: str) -> None:
    assert client_key(address) == key
