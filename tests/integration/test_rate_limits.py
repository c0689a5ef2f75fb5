"""Rate limits through the whole app: creation per key and per address, unknown codes
(enumeration), client addresses behind proxies, and limits shared by two instances in Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from snip.bootstrap import create_app
from snip.config import Settings
from snip.domain.accounts import Actor
from snip.service_layer.links import NewLink
from tests.helpers import free_port, metric_samples
from tests.redis_service import redis_url

BASE_URL = "http://snip.test"
PROBLEM = "application/problem+json"
HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")



class Running:
    """An app started with some settings, and HTTP clients on it from chosen addresses."""

    def __init__(self, app: Any, stack: AsyncExitStack) -> None:
        self.app = app
        self.snip = app.state.snip
        self._stack = stack

    async def client(self, address: str = "198.51.100.7", headers: dict[str, str] | None = None
                     ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers))


Start = Callable[..., Awaitable["Running"]]


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """`await start(**settings)`: the app on this test's database with these settings changed."""
    async with AsyncExitStack() as stack:

        async def run(**changes: Any) -> Running:
            app = create_app(settings.model_copy(update=changes))
            await stack.enter_async_context(LifespanManager(app))
            return Running(app, stack)

        yield run


def assert_limited(response: httpx.Response, limit: int) -> None:
    """A 429 problem with sane Retry-After and RateLimit-* headers."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "/problems/rate-limited"
    assert int(response.headers["ratelimit-limit"]) == limit
    assert int(response.headers["ratelimit-remaining"]) == 0
    assert 1 <= int(response.headers["retry-after"]) <= 3600
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 3600


def url(i: int) -> dict[str, str]:
    return {"url": f"https://example.com/page/{i}"}


# -- creation ---------------------------------------------------------------------------------


async def test_anonymous_creation_is_exact_per_address_under_concurrency(start: Start) -> None:
    running = await start(rate_limit_anonymous_create="10/hour")
    one, other = await running.client("198.51.100.7"), await running.client("198.51.100.8")
    replies = await asyncio.gather(*(one.post("/api/v1/links", json=url(i)) for i in range(40)))
    created = [r for r in replies if r.status_code == 201]
    assert len(created) == 10
    for response in replies:
        if response.status_code != 201:
            assert_limited(response, 10)
    remaining = sorted(int(r.headers["ratelimit-remaining"]) for r in created)
    assert remaining == list(range(10))  # every success says how many are left
    assert all(r.headers["ratelimit-limit"] == "10" for r in created)
    assert (await running.snip.links.stats())[0] == 10  # refused requests created nothing

    # Another address has its own allowance; the legacy route shares the address's limit.
    assert (await other.post("/api/v1/links", json=url(99))).status_code == 201
    assert_limited(await one.post("/shorten", json=url(100)), 10)
    assert (await other.post("/shorten", json=url(101))).status_code == 201


async def test_the_home_page_form_is_limited_with_a_readable_page(start: Start) -> None:
    running = await start(rate_limit_anonymous_create="2/hour")
    browser = await running.client(headers={"Accept": "text/html"})
    form = {"url": "https://example.com/form"}
    assert [(await browser.post("/", data=form)).status_code for _ in range(2)] == [201, 201]
    refused = await browser.post("/", data=form)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert "Too many links created from this address" in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"


async def test_each_api_key_has_its_own_limit_apart_from_anonymous_callers(start: Start) -> None:
    running = await start(rate_limit_create="5/hour", rate_limit_anonymous_create="2/hour")
    accounts = running.snip.accounts
    keys = []
    for name in ("alice", "bob"):
        _, made = await accounts.create_user(Actor.system(), name, with_key=True)
        keys.append(made.key)
    # Same address for everyone: the keys are counted by key, not by address.
    alice = await running.client(headers={"Authorization": f"Bearer {keys[0]}"})
    bob = await running.client(headers={"X-Api-Key": keys[1]})
    anonymous = await running.client()

    statuses = [(await alice.post("/api/v1/links", json=url(i))).status_code for i in range(7)]
    assert statuses == [201] * 5 + [429] * 2
    assert [(await bob.post("/api/v1/links", json=url(i))).status_code for i in range(5)] == \
        [201] * 5
    assert [(await anonymous.post("/api/v1/links", json=url(i))).status_code
            for i in range(3)] == [201, 201, 429]


async def test_a_refused_caller_is_not_charged_and_off_means_no_limit(start: Start) -> None:
    running = await start(rate_limit_anonymous_create="off", rate_limit_create="1/hour",
                          anonymous_create=False)
    anonymous = await running.client()
    # Without anonymous creation, no key is a 401 (before any limit is counted).
    assert (await anonymous.post("/api/v1/links", json=url(1))).status_code == 401
    running2 = await start(rate_limit_anonymous_create="off")
    free = await running2.client()
    replies = [await free.post("/api/v1/links", json=url(i)) for i in range(30)]
    assert {r.status_code for r in replies} == {201}
    assert not any("ratelimit-limit" in r.headers for r in replies)


async def test_a_bulk_of_n_links_costs_n(start: Start) -> None:
    running = await start(rate_limit_anonymous_create="10/hour")
    client = await running.client()
    first = await client.post("/api/v1/links/bulk", json={"links": [url(i) for i in range(4)]})
    assert first.status_code in (200, 201, 207), first.text
    assert first.headers["ratelimit-remaining"] == "6"
    over = await client.post("/api/v1/links/bulk", json={"links": [url(i) for i in range(7)]})
    assert over.status_code == 429  # 7 do not fit in what is left: none is created
    assert over.headers["ratelimit-remaining"] == "6"
    assert int(over.headers["retry-after"]) == 360  # one more unit is back after 6 minutes
    too_big = await client.post("/api/v1/links/bulk", json={"links": [url(i) for i in range(11)]})
    assert too_big.status_code == 429
    assert "send at most 10 at a time" in too_big.json()["detail"]
    assert (await client.post("/api/v1/links", json=url(50))).headers["ratelimit-remaining"] == "5"


# -- unknown codes (enumeration) --------------------------------------------------------------


async def test_unknown_codes_are_limited_per_address_and_links_still_redirect(start: Start) -> None:
    running = await start(rate_limit_not_found="5/hour")
    await running.snip.links.create(NewLink(url="https://example.com/real", code="real1"),
                                    Actor.system())
    scanner, bystander = await running.client("203.0.113.5"), await running.client("203.0.113.6")

    replies = await asyncio.gather(*(scanner.get(f"/nope{i}") for i in range(30)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(404) == 5 and statuses.count(429) == 25
    for response in replies:
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["ratelimit-limit"] == "5"
        if response.status_code == 429:
            assert "Too many requests" in response.text
            assert int(response.headers["retry-after"]) >= 1
    found = sorted(int(r.headers["ratelimit-remaining"]) for r in replies if r.status_code == 404)
    assert found == [0, 1, 2, 3, 4]

    # The scanner's existing links still work (the limiter is never asked on that path)...
    for _ in range(10):
        response = await scanner.get("/real1")
        assert response.status_code == 302
        assert "ratelimit-limit" not in response.headers
    # ...and another address is unaffected.
    assert (await bystander.get("/nope0")).status_code == 404

    # Previews tell known codes from unknown ones too: they count against the same limit.
    assert (await scanner.get("/real1+")).status_code == 200
    assert (await scanner.get("/nope0+")).status_code == 429
    preview = await bystander.get("/nope0+")
    assert preview.status_code == 404 and preview.headers["ratelimit-remaining"] == "3"


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited(start: Start) -> None:
    running = await start(rate_limit_not_found="3/hour", trusted_proxies=["10.0.0.0/8"])
    proxy = await running.client("10.0.0.2")

    async def unknown(client_ip: str) -> int:
        response = await proxy.get("/nope", headers={"X-Forwarded-For": client_ip})
        return response.status_code

    assert [await unknown("192.0.2.1") for _ in range(4)] == [404, 404, 404, 429]
    assert await unknown("192.0.2.2") == 404  # another client behind the same proxy
    # IPv6 clients count by /64: a new address in the same /64 is the same client.
    assert [await unknown(f"2001:db8:5:6::{i}") for i in range(4)] == [404, 404, 404, 429]
    assert await unknown("2001:db8:5:7::1") == 404


async def test_without_trusted_proxies_a_spoofed_header_changes_nothing(start: Start) -> None:
    running = await start(rate_limit_not_found="3/hour")
    client = await running.client("198.51.100.20")
    statuses = [(await client.get("/nope", headers={"X-Forwarded-For": f"192.0.2.{i}",
                                                    "Forwarded": f"for=192.0.2.{i}"})).status_code
                for i in range(5)]
    assert statuses == [404, 404, 404, 429, 429]


async def test_the_window_frees_capacity_again(start: Start) -> None:
    running = await start(rate_limit_not_found="2/second")
    client = await running.client()
    assert [(await client.get("/nope")).status_code for _ in range(3)] == [404, 404, 429]
    await asyncio.sleep(0.55)  # one unit back after 1/2 s
    assert [(await client.get("/nope")).status_code for _ in range(2)] == [404, 429]
    await asyncio.sleep(1.05)  # the whole bucket after 1 s
    assert [(await client.get("/nope")).status_code for _ in range(3)] == [404, 404, 429]


async def test_refusals_are_counted_in_metrics(start: Start) -> None:
    running = await start(rate_limit_not_found="1/hour", rate_limit_anonymous_create="1/hour")
    client = await running.client()
    for _ in range(3):
        await client.get("/nope")
    for i in range(2):
        await client.post("/api/v1/links", json=url(i))
    samples = metric_samples((await client.get("/metrics")).text)
    assert samples['snip_rate_limited_total{limit="not_found"}'] == 2
    assert samples['snip_rate_limited_total{limit="anonymous_create"}'] == 1
    assert samples['snip_redirects_total{outcome="rate_limited"}'] == 2


# -- password attempts and reports (the helpers other routes call) ----------------------------


async def test_password_attempts_are_limited_per_address_and_per_link(start: Start) -> None:
    running = await start(rate_limit_password="3/hour", rate_limit_password_link="5/hour")
    for code in ("pw1", "pw2"):
        await running.snip.links.create(
            NewLink(url="https://example.com/secret", code=code, password="right-one"),
            Actor.system())
    browsers = {ip: await running.client(ip, headers={"Accept": "text/html"})
                for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")}

    async def attempt(ip: str, code: str, password: str = "wrong") -> int:
        response = await browsers[ip].post(f"/{code}", data={"password": password})
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["ratelimit-remaining"] == "0"
        return response.status_code

    assert [await attempt("192.0.2.1", "pw1") for _ in range(4)] == [401, 401, 401, 429]
    # Even the right password waits once the address is over its limit.
    assert await attempt("192.0.2.1", "pw1", "right-one") == 429
    assert await attempt("192.0.2.2", "pw1") == 401  # another address, same link
    assert await attempt("192.0.2.3", "pw1", "right-one") == 303
    assert await attempt("192.0.2.4", "pw1") == 429  # the link has had its 5 attempts
    assert await attempt("192.0.2.4", "pw2") == 401  # another link


async def test_reports_are_limited_per_address(start: Start) -> None:
    running = await start(rate_limit_reports="2/hour")
    await running.snip.links.create(NewLink(url="https://example.com/spam", code="spam1"),
                                    Actor.system())
    reporter, another = await running.client("192.0.2.50"), await running.client("192.0.2.51")
    body = {"link": "spam1", "reason": "spam"}
    statuses = [(await reporter.post("/api/v1/reports", json=body)).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    assert (await another.post("/api/v1/reports", json=body)).status_code == 202


# -- Redis: limits shared by instances, and Redis down ----------------------------------------


async def test_two_instances_sharing_redis_share_the_limit(start: Start) -> None:
    prefix = f"snip-test-{secrets.token_hex(4)}:"
    changes = {"redis_url": redis_url(), "redis_prefix": prefix, "rate_limit_not_found": "20/hour",
               "rate_limit_anonymous_create": "15/hour"}
    a, b = await start(**changes), await start(**changes)
    clients = [await a.client("198.51.100.30"), await b.client("198.51.100.30")]
    replies = await asyncio.gather(*(clients[i % 2].get(f"/nope{i}") for i in range(80)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(404) == 20, statuses
    assert statuses.count(429) == 60
    created = await asyncio.gather(*(clients[i % 2].post("/api/v1/links", json=url(i))
                                     for i in range(40)))
    assert [r.status_code for r in created].count(201) == 15
    # A different address is still free on both.
    other = await b.client("198.51.100.31")
    assert (await other.get("/nope")).status_code == 404


async def test_with_redis_down_limits_hold_per_process_and_nothing_fails(start: Start) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    # The click-stream consumer is on (the default): closing must not fail on the dead Redis.
    running = await start(redis_url=dead, rate_limit_not_found="4/hour")
    client = await running.client()
    statuses = [(await client.get(f"/nope{i}")).status_code for i in range(6)]
    assert statuses == [404] * 4 + [429] * 2
    samples = metric_samples((await client.get("/metrics")).text)
    assert samples['snip_redis_errors_total{operation="ratelimit"}'] >= 1
