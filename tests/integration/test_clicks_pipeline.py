"""The click pipeline on real storage (SQLite and PostgreSQL) and a real Redis: what a redirect
records, idempotent batches, sharded visit counters, GeoIP, the stream and its redelivery.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from snip.adapters.redis_stream import RedisClickSink, StreamConsumer
from snip.adapters.sql.clicks import SqlClickStore
from snip.adapters.sql.schema import clicks, link_counters
from snip.bootstrap import Snip, create_app
from snip.config import Settings
from snip.domain.clicks import Click, new_click_id
from tests.conftest import BASE_URL
from tests.integration.test_observability import sample
from tests.redis_service import redis_url

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")


@pytest.fixture
async def tracked(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Snip]]:
    """The app with clicks written only when a test flushes them."""
    app = create_app(settings.model_copy(update={"visit_flush_interval": 60.0}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
            yield c, app.state.snip  # type: ignore[attr-defined]


async def rows(snip: Snip, code: str) -> list[Any]:
    async with snip.engine.connect() as conn:
        return list((await conn.execute(
            select(clicks).where(clicks.c.code == code).order_by(clicks.c.id))).mappings())


async def create(client: httpx.AsyncClient, **body: Any) -> str:
    reply = await client.post("/api/v1/links", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["code"])


async def visits(snip: Snip, code: str) -> int:
    return (await snip.links.get(code)).visits


def click(code: str, *, counted: bool = True, at: float = 1_700_000_000.0) -> Click:
    return Click(id=new_click_id(), code=code, at=at, referrer_host=None, referrer=None,
                 user_agent=None, browser=None, os=None, device=None, is_bot=False,
                 bot_reason=None, ip=None, country=None, counted=counted)


# -- what a redirect records ----------------------------------------------------------------------


async def test_a_redirect_records_a_classified_click(
        tracked: tuple[httpx.AsyncClient, Snip]) -> None:
    client, snip = tracked
    code = await create(client, url="https://example.com/c")
    reply = await client.get(f"/{code}", headers={"user-agent": CHROME,
                                                  "referer": "https://news.example.org/x?y=1"})
    assert reply.status_code == 302
    assert await rows(snip, code) == []  # nothing written on the request path
    await snip.clicks.flush()
    [row] = await rows(snip, code)
    assert (row["browser"], row["os"], row["device"]) == ("Chrome", "Windows", "desktop")
    assert (row["is_bot"], row["bot_reason"]) == (False, None)
    assert (row["referrer_host"], row["referrer"]) == ("news.example.org",
                                                       "https://news.example.org/x?y=1")
    assert row["ip"] == "127.0.0.0"  # the ASGI test client's 127.0.0.1, anonymised (default)
    assert len(row["id"]) == 36 and row["id"][14] == "7"
    assert await visits(snip, code) == 1


async def test_head_prefetch_and_previews_are_bots_and_head_is_no_visit(
        tracked: tuple[httpx.AsyncClient, Snip]) -> None:
    client, snip = tracked
    code = await create(client, url="https://example.com/b")
    await client.head(f"/{code}", headers={"user-agent": CHROME})
    await client.get(f"/{code}", headers={"user-agent": CHROME, "sec-purpose": "prefetch"})
    await client.get(f"/{code}", headers={"user-agent": "Slackbot-LinkExpanding 1.0"})
    await client.get(f"/{code}", headers={"user-agent": CHROME})
    await snip.clicks.flush()
    reasons = sorted(str(r["bot_reason"]) for r in await rows(snip, code))
    assert reasons == ["None", "head", "prefetch", "user-agent"]
    assert await visits(snip, code) == 3  # every GET served is a visit; HEAD only looks


async def test_limited_links_are_recorded_without_counting_twice(
        tracked: tuple[httpx.AsyncClient, Snip]) -> None:
    client, snip = tracked
    code = await create(client, url="https://example.com/l", max_visits=3)
    statuses = [(await client.get(f"/{code}")).status_code for _ in range(5)]
    assert statuses == [302, 302, 302, 410, 410]
    await snip.clicks.flush()
    assert len(await rows(snip, code)) == 3  # the redirects served; 410s are not clicks
    assert await visits(snip, code) == 3
    async with snip.engine.connect() as conn:
        shards = await conn.scalar(select(func.count()).select_from(link_counters)
                                   .where(link_counters.c.code == code))
    assert shards == 0


async def test_click_tracking_off_keeps_no_rows_but_counts_visits(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"track_clicks": False}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            snip: Snip = app.state.snip  # type: ignore[attr-defined]
            code = await create(client, url="https://example.com/off")
            for _ in range(4):
                await client.get(f"/{code}")
            await snip.clicks.flush()
            assert await rows(snip, code) == []
            assert await visits(snip, code) == 4


async def test_a_full_queue_is_counted_in_the_dropped_metric(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"clicks_queue_size": 5,
                                                 "visit_flush_interval": 60.0}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            code = await create(client, url="https://example.com/full")
            replies = [await client.get(f"/{code}") for _ in range(20)]
            assert {r.status_code for r in replies} == {302}  # a full queue never fails a redirect
            text = (await client.get("/metrics")).text
            assert sample(text, "snip_clicks_dropped_total") == 15
            assert sample(text, "snip_clicks_queue_depth") == 5


# -- the store: one statement per batch, idempotent, sharded counters -----------------------------


async def test_writing_a_batch_twice_stores_and_counts_it_once(services: Snip) -> None:
    store = SqlClickStore(services.engine, shards=4)
    batch = [click("dup") for _ in range(300)] + [click("dup", counted=False) for _ in range(7)]
    assert await store.write(batch) == 307
    assert await store.write(batch) == 0  # a redelivered batch
    assert await store.write([*batch[:10], click("dup")]) == 1  # a partly redelivered one
    assert await store.count("dup") == 308
    async with services.engine.connect() as conn:
        total = await conn.scalar(select(func.sum(link_counters.c.clicks))
                                  .where(link_counters.c.code == "dup"))
    assert total == 301


async def test_concurrent_writers_on_a_hot_link_spread_over_shards(services: Snip) -> None:
    store = SqlClickStore(services.engine, shards=8)
    await asyncio.gather(*(store.write([click("hot") for _ in range(50)]) for _ in range(16)))
    async with services.engine.connect() as conn:
        got = (await conn.execute(select(func.count(), func.sum(link_counters.c.clicks))
                                  .where(link_counters.c.code == "hot"))).one()
    assert got[1] == 800
    assert got[0] > 1  # more than one row took the writes


async def test_visits_and_ordering_include_the_counter_shards(client: httpx.AsyncClient,
                                                              snip: Snip) -> None:
    few = await create(client, url="https://example.com/few")
    many = await create(client, url="https://example.com/many")
    store = SqlClickStore(snip.engine, shards=3)
    for _ in range(3):
        await store.write([click(many) for _ in range(5)])
    await store.write([click(few)])
    assert await visits(snip, many) == 15
    from snip.domain.links import LinkQuery

    page = await snip.links.list(LinkQuery(order_by="visits", descending=True))
    assert [(link.code, link.visits) for link in page.items] == [(many, 15), (few, 1)]
    page = await snip.links.list(LinkQuery(order_by="visits", descending=False))
    assert [(link.code, link.visits) for link in page.items] == [(few, 1), (many, 15)]


# -- GeoIP ----------------------------------------------------------------------------------------


def build_mmdb(path: Path) -> None:
    """A small MaxMind-format country database, made here (no download, no licence)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.insert_network(IPSet(["2001:db8:1::/48"]), {"country": {"iso_code": "JP"}})
    writer.to_db_file(str(path))


async def test_country_from_a_geoip_database(settings: Settings, tmp_path: Path) -> None:
    build_mmdb(tmp_path / "countries.mmdb")
    app = create_app(settings.model_copy(update={
        "geoip_db": str(tmp_path / "countries.mmdb"), "trusted_proxies": ["127.0.0.1"],
        "visit_flush_interval": 60.0,
    }))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            snip: Snip = app.state.snip  # type: ignore[attr-defined]
            code = await create(client, url="https://example.com/geo")
            for forwarded in ("203.0.113.200", "2001:db8:1:2::9", "198.51.100.1"):
                await client.get(f"/{code}", headers={"x-forwarded-for": forwarded})
            await snip.clicks.flush()
            got = {(r["ip"], r["country"]) for r in await rows(snip, code)}
    assert got == {("203.0.113.0", "NZ"), ("2001:db8:1::", "JP"), ("198.51.100.0", None)}


# -- distributed mode: the Redis stream -----------------------------------------------------------


@pytest.fixture
def stream() -> str:
    return f"snip-test:clicks:{uuid.uuid4().hex}"


async def test_stream_redelivery_after_a_dead_consumer_counts_once(services: Snip,
                                                                   stream: str) -> None:
    url = redis_url()
    store = SqlClickStore(services.engine)
    sink = RedisClickSink(url, stream, store)
    batch = [click("red") for _ in range(250)]
    try:
        assert await sink.write(batch) == 250
        assert sink.fallback_writes == 0  # three entries: 100, 100 and 50 clicks

        class Crash(Exception):
            pass

        class CrashAfterCommit:
            """The database commits, then the worker dies before acknowledging."""

            async def write(self, clicks: Any) -> int:
                await store.write(clicks)
                raise Crash

        dead = StreamConsumer(url, stream, CrashAfterCommit(), name="dead", batch_size=100,
                              claim_idle=0.2)
        await dead.ensure_group()
        with pytest.raises(Crash):
            await dead.step(block=False)
        assert await dead.pending() == 1  # one entry of 100 clicks written, never acknowledged
        assert await store.count("red") == 100

        await asyncio.sleep(0.3)  # the dead consumer's entries are now idle long enough
        alive = StreamConsumer(url, stream, store, name="alive", batch_size=100,
                               claim_idle=0.2)
        await alive.drain()
        assert await alive.pending() == 0
        assert alive.acked == 3  # the claimed entry, then the two never read
        assert alive.written == 150  # the claimed 100 were stored already: nothing new
        assert await store.count("red") == 250  # 100 written twice, stored once
        async with services.engine.connect() as conn:
            counted = await conn.scalar(select(func.sum(link_counters.c.clicks))
                                        .where(link_counters.c.code == "red"))
        assert counted == 250
        await dead.close()
        await alive.close()
    finally:
        await sink._client.delete(stream)
        await sink.close()


async def test_without_redis_the_sink_writes_to_the_database(services: Snip, stream: str) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = SqlClickStore(services.engine)
    sink = RedisClickSink(f"redis://127.0.0.1:{port}/0", stream, store, timeout=0.5)
    try:
        assert await sink.write([click("fallback") for _ in range(10)]) == 10
        assert sink.fallback_writes == 10
        assert await store.count("fallback") == 10
    finally:
        await sink.close()


async def test_served_clicks_reach_the_database_through_the_stream(settings: Settings,
                                                                   stream: str) -> None:
    prefix = stream + ":"
    app = create_app(settings.model_copy(update={"redis_url": redis_url(), "redis_prefix": prefix,
                                                 "visit_flush_interval": 0.05}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            snip: Snip = app.state.snip  # type: ignore[attr-defined]
            assert snip.click_consumer is not None  # the embedded consumer (default)
            code = await create(client, url="https://example.com/s")
            for _ in range(30):
                await client.get(f"/{code}")
            for _ in range(100):
                if await visits(snip, code) == 30:
                    break
                await asyncio.sleep(0.05)
            assert await visits(snip, code) == 30
            assert len(await rows(snip, code)) == 30
            assert snip.click_consumer.written == 30


async def test_a_limit_set_later_counts_the_visits_already_made(client: httpx.AsyncClient,
                                                                snip: Snip) -> None:
    code = await create(client, url="https://example.com/later-limit")
    await SqlClickStore(snip.engine).write([click(code) for _ in range(3)])
    assert await visits(snip, code) == 3
    updated = await snip.links.update(code, {"max_visits": 5})
    assert updated.visits == 3
    statuses = [(await client.get(f"/{code}")).status_code for _ in range(4)]
    assert statuses == [302, 302, 410, 410]  # 3 made before the limit + 2 = 5
    assert await visits(snip, code) == 5
