"""Click stats, raw clicks, CSV export and retention, through the HTTP API on SQLite and PostgreSQL.

Clicks are inserted straight into the `clicks` table (`add_clicks`), as the click writer would.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uuid_utils
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from snip.adapters.sql.schema import click_daily, clicks, links
from snip.bootstrap import Snip, running
from snip.config import Settings
from snip.domain.accounts import ADMIN, LINKS_READ, STATS_READ, Actor
from snip.entrypoints.auth import current_actor
from snip.service_layer.links import NewLink

PROBLEM = "application/problem+json"
NOW = datetime.now(UTC)
TODAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class C:
    """A click to insert; only what a test cares about."""

    ts: datetime
    bot: bool = False
    referrer_host: str | None = None
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    country: str | None = None
    user_agent: str | None = None


async def add_clicks(engine: AsyncEngine, code: str, items: Sequence[C]) -> list[str]:
    """Insert clicks as the writer does (UUIDv7 ids, UTC times); returns their ids."""
    rows: list[dict[str, Any]] = [
        {"id": str(uuid_utils.uuid7()), "code": code, "ts": c.ts, "is_bot": c.bot,
         "referrer_host": c.referrer_host,
         "referrer": f"https://{c.referrer_host}/page" if c.referrer_host else None,
         "user_agent": c.user_agent, "browser": c.browser, "os": c.os, "device": c.device,
         "bot_reason": "user-agent" if c.bot else None, "ip": "192.0.2.0", "country": c.country}
        for c in items
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 500):
            await conn.execute(insert(clicks), rows[start:start + 500])
    return [r["id"] for r in rows]


async def count_raw(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(clicks)) or 0)


async def new_link(api: httpx.AsyncClient, code: str) -> str:
    response = await api.post("/api/v1/links", json={"url": f"https://example.com/{code}",
                                                        "code": code})
    assert response.status_code == 201, response.text
    return code


def fastapi_app(app: Any) -> Any:
    """The FastAPI app under the redirect and observability layers."""
    while not hasattr(app, "dependency_overrides"):
        app = app.app
    return app


async def key_for(snip: Snip, name: str, role: str = "user",
                  scopes: str | None = None) -> str:
    """A real API key for a new user `name`."""
    assert snip.accounts is not None
    await snip.accounts.create_user(Actor.system(), name, role)
    return (await snip.accounts.create_key(Actor.system(), name, scopes=scopes)).key


@pytest.fixture
async def api(client: httpx.AsyncClient, snip: Snip) -> httpx.AsyncClient:
    """The test client, acting for an admin (with a real admin key)."""
    client.headers["Authorization"] = f"Bearer {await key_for(snip, 'stats-admin', 'admin')}"
    return client


@pytest.fixture
def acting(app: Any) -> Iterator[Any]:
    """`acting(actor)`: the API sees every following request as made by `actor`."""
    api = fastapi_app(app)

    def act(actor: Actor) -> None:
        api.dependency_overrides[current_actor] = lambda: actor

    yield act
    api.dependency_overrides.pop(current_actor, None)


def mixed_clicks(days: int, start: datetime) -> list[C]:
    """A varied, deterministic set of clicks over `days` days from `start`."""
    out = []
    referrers = ["news.example", "t.co", None, "search.example"]
    browsers = ["Firefox", "Chrome", "Safari"]
    for day in range(days):
        for i in range(day % 5 + 1):
            out.append(C(
                ts=start + timedelta(days=day, hours=(i * 7) % 24, minutes=i),
                bot=(i % 4 == 3),
                referrer_host=referrers[(day + i) % 4],
                browser=browsers[(day * i) % 3],
                os=["Linux", "Windows", "iOS"][i % 3],
                device=["desktop", "mobile"][(day + i) % 2],
                country=[None, "DE", "FR", "US"][day % 4],
            ))
    return out


# -- stats ---------------------------------------------------------------------------------------


async def test_stats_totals_series_and_top_values(api: httpx.AsyncClient, snip: Snip) -> None:
    code = await new_link(api, "stats1")
    day0 = TODAY - timedelta(days=3)
    await add_clicks(snip.engine, code, [
        C(day0 + timedelta(hours=1), referrer_host="news.example", browser="Firefox", os="Linux",
          device="desktop", country="DE"),
        C(day0 + timedelta(hours=2), referrer_host="news.example", browser="Firefox", os="Linux",
          device="desktop", country="DE"),
        C(day0 + timedelta(hours=23, minutes=59), referrer_host="t.co", browser="Chrome",
          os="Android", device="mobile", country="FR"),
        # day0 + 1 has no clicks: its bucket is there, with zeros
        C(day0 + timedelta(days=2, hours=5), bot=True, browser="Slackbot", device="bot"),
        C(day0 + timedelta(days=2, hours=6), referrer_host="news.example", browser="Safari",
          os="iOS", device="mobile"),
    ])
    await add_clicks(snip.engine, "other", [C(day0 + timedelta(hours=3))])  # another link

    response = await api.get(f"/api/v1/links/{code}/stats", params={
        "from": day0.date().isoformat(), "to": (day0 + timedelta(days=3)).isoformat()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["humans"], body["bots"]) == (5, 4, 1)
    assert body["interval"] == "day"
    assert datetime.fromisoformat(body["from"]) == day0
    assert datetime.fromisoformat(body["to"]) == day0 + timedelta(days=3)
    assert [(datetime.fromisoformat(b["start"]), b["humans"], b["bots"])
            for b in body["series"]] == [(day0, 3, 0), (day0 + timedelta(days=1), 0, 0),
                                         (day0 + timedelta(days=2), 1, 1)]
    top = body["top"]
    assert top["referrers"] == [
        {"value": "news.example", "total": 3, "humans": 3, "bots": 0},
        {"value": "t.co", "total": 1, "humans": 1, "bots": 0}]
    assert [(t["value"], t["total"]) for t in top["browsers"]] == [
        ("Firefox", 2), ("Chrome", 1), ("Safari", 1), ("Slackbot", 1)]
    assert [(t["value"], t["total"]) for t in top["os"]] == [
        ("Linux", 2), ("Android", 1), ("iOS", 1)]
    # Ties go alphabetically.
    assert [(t["value"], t["humans"], t["bots"]) for t in top["devices"]] == [
        ("desktop", 2, 0), ("mobile", 2, 0), ("bot", 0, 1)]
    assert [(t["value"], t["total"]) for t in top["countries"]] == [("DE", 2), ("FR", 1)]


async def test_hourly_series_has_every_hour(api: httpx.AsyncClient, snip: Snip) -> None:
    code = await new_link(api, "hourly")
    start = TODAY - timedelta(days=1)
    await add_clicks(snip.engine, code, [C(start + timedelta(hours=2, minutes=5)),
                                         C(start + timedelta(hours=2, minutes=59), bot=True),
                                         C(start + timedelta(hours=5))])
    response = await api.get(f"/api/v1/links/{code}/stats", params={
        "from": (start + timedelta(hours=1, minutes=30)).isoformat(),
        "to": (start + timedelta(hours=6)).isoformat(), "interval": "hour"})
    assert response.status_code == 200, response.text
    body = response.json()
    series = [(datetime.fromisoformat(b["start"]), b["humans"], b["bots"]) for b in body["series"]]
    hour = timedelta(hours=1)
    assert series == [(start + hour, 0, 0), (start + 2 * hour, 1, 1), (start + 3 * hour, 0, 0),
                      (start + 4 * hour, 0, 0), (start + 5 * hour, 1, 0)]
    assert (body["total"], body["humans"], body["bots"]) == (3, 2, 1)


async def test_default_range_is_the_last_30_days(api: httpx.AsyncClient, snip: Snip) -> None:
    code = await new_link(api, "recent")
    await add_clicks(snip.engine, code, [C(NOW - timedelta(minutes=1)),
                                         C(NOW - timedelta(days=29)),
                                         C(NOW - timedelta(days=45))])
    body = (await api.get(f"/api/v1/links/{code}/stats")).json()
    assert body["total"] == 2
    assert len(body["series"]) in (30, 31)  # whole days: the first one may start before


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
    ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ({"from": "2020-01-01", "to": "2026-01-01", "interval": "hour"}, "to"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-40"}, "to"),
    ({"from": "0001-01-01"}, "from"),
    ({"interval": "week"}, "interval"),
])
async def test_bad_ranges_are_422_problems(api: httpx.AsyncClient, params: dict[str, str],
                                           field: str) -> None:
    await new_link(api, "ranges")
    response = await api.get("/api/v1/links/ranges/stats", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["loc"] == ["query", field]


async def test_stats_of_an_unknown_code_is_404(api: httpx.AsyncClient) -> None:
    for path in ("/api/v1/links/nope/stats", "/api/v1/links/nope/clicks",
                 "/api/v1/links/nope/clicks?format=csv"):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == PROBLEM


async def test_global_summary(api: httpx.AsyncClient, snip: Snip) -> None:
    a, b = await new_link(api, "glob-a"), await new_link(api, "glob-b")
    at = TODAY - timedelta(days=1, hours=-3)
    await add_clicks(snip.engine, a, [C(at, country="DE")] * 3 + [C(at, bot=True)])
    await add_clicks(snip.engine, b, [C(at, country="FR")] * 5)
    body = (await api.get("/api/v1/stats", params={"from": "2026-01-01T00:00Z",
                                                      "to": NOW.isoformat()})).json()
    assert (body["total"], body["humans"], body["bots"]) == (9, 8, 1)
    assert [(t["value"], t["total"]) for t in body["top"]["links"]] == [(b, 5), (a, 4)]
    assert [(t["value"], t["total"]) for t in body["top"]["countries"]] == [("FR", 5), ("DE", 3)]
    assert body["code"] is None


# -- who may read stats ---------------------------------------------------------------------------


async def test_stats_only_for_the_owner_or_an_admin(api: httpx.AsyncClient, snip: Snip,
                                                    acting: Any) -> None:
    code = await new_link(api, "alices")
    async with snip.engine.begin() as conn:
        await conn.execute(update(links).where(links.c.code == code).values(owner="alice"))
    await add_clicks(snip.engine, code, [C(NOW - timedelta(hours=1))])
    unknown = [await api.get(p) for p in ("/api/v1/links/zzz/stats",
                                              "/api/v1/links/zzz/clicks")]
    paths = [f"/api/v1/links/{code}/stats", f"/api/v1/links/{code}/clicks",
             f"/api/v1/links/{code}/clicks?format=csv"]

    acting(Actor("bob", "user", frozenset({STATS_READ, LINKS_READ})))
    for path, like in zip(paths, [*unknown, unknown[1]], strict=True):
        response = await api.get(path)
        assert response.status_code == 404, path  # not 403: whether the code exists is not told
        assert response.json()["detail"] == like.json()["detail"].replace("zzz", code)
    assert (await api.get("/api/v1/stats")).status_code == 403

    acting(Actor("alice", "user", frozenset({STATS_READ})))
    for path in paths:
        assert (await api.get(path)).status_code == 200, path
    assert (await api.get("/api/v1/stats")).status_code == 403

    acting(Actor("alice", "user", frozenset({LINKS_READ})))  # her own link, no stats scope
    assert (await api.get(paths[0])).status_code == 403
    acting(Actor.anonymous())
    assert (await api.get(paths[0])).status_code == 401
    assert (await api.get("/api/v1/stats")).status_code == 401

    acting(Actor("root", "admin", frozenset({ADMIN})))
    for path in [*paths, "/api/v1/stats"]:
        assert (await api.get(path)).status_code == 200, path


# -- raw clicks -------------------------------------------------------------------------------------


async def test_clicks_page_newest_first_with_a_cursor(api: httpx.AsyncClient,
                                                      snip: Snip) -> None:
    code = await new_link(api, "pages")
    base = NOW - timedelta(hours=2)
    # Some clicks share a timestamp: the cursor must neither skip nor repeat them.
    items = [C(base + timedelta(seconds=i // 3), browser=f"b{i}") for i in range(25)]
    ids = await add_clicks(snip.engine, code, items)
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        response = await api.get(f"/api/v1/links/{code}/clicks", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(c["id"] for c in seen) == sorted(ids)
    assert len({c["id"] for c in seen}) == 25
    times = [datetime.fromisoformat(c["ts"]) for c in seen]
    assert times == sorted(times, reverse=True)
    first = seen[0]
    assert first["code"] == code and first["ip"] == "192.0.2.0" and first["is_bot"] is False

    window = await api.get(f"/api/v1/links/{code}/clicks", params={
        "from": (base + timedelta(seconds=2)).isoformat(),
        "to": (base + timedelta(seconds=4)).isoformat()})
    assert len(window.json()["items"]) == 6

    for params in ({"limit": 1001}, {"limit": 0}, {"cursor": "bm90IGEgY3Vyc29y"},
                   {"cursor": "%%%"}, {"from": "2026-01-02", "to": "2026-01-01"}):
        bad = await api.get(f"/api/v1/links/{code}/clicks", params=params)
        assert bad.status_code == 422, params
        assert bad.headers["content-type"] == PROBLEM


async def asgi_bodies(app: Any, path: str, query: str, headers: dict[str, str]) -> list[bytes]:
    """The body messages the ASGI app sends for a GET (httpx's ASGI transport joins them)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "client": ("127.0.0.1", 50000),
             "server": ("snip.test", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         ({"host": "snip.test"} | headers).items()]}
    bodies: list[bytes] = []
    requested = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if requested.is_set():
            await asyncio.Event().wait()  # the client stays connected
        requested.set()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            bodies.append(message["body"])

    await app(scope, receive, send)
    return bodies


async def test_csv_export_streams_every_click(api: httpx.AsyncClient, snip: Snip,
                                              app: Any) -> None:
    code = await new_link(api, "export")
    base = NOW - timedelta(days=1)
    items = [C(base + timedelta(seconds=i), browser="Firefox") for i in range(2100)]
    items.append(C(base + timedelta(seconds=5000), user_agent="=HYPERLINK(\"http://evil\")",
                   referrer_host="a,b\"c"))
    await add_clicks(snip.engine, code, items)
    async with api.stream("GET", f"/api/v1/links/{code}/clicks",
                             params={"format": "csv"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == \
            f'attachment; filename="{code}-clicks.csv"'
        text = "".join([chunk async for chunk in response.aiter_text()])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2101
    assert len({r["id"] for r in rows}) == 2101
    newest = rows[0]
    assert newest["user_agent"] == "'=HYPERLINK(\"http://evil\")"  # no formula in a spreadsheet
    assert newest["referrer_host"] == "a,b\"c"
    assert rows[1]["browser"] == "Firefox" and rows[1]["is_bot"] == "false"
    assert list(rows[0]) == ["id", "code", "ts", "referrer_host", "referrer", "user_agent",
                             "browser", "os", "device", "is_bot", "bot_reason", "ip", "country"]
    # Sent page by page (1000 clicks each), never built whole in memory.
    bodies = await asgi_bodies(app, f"/api/v1/links/{code}/clicks", "format=csv",
                               {"authorization": api.headers["authorization"]})
    assert len(bodies) == 3
    assert b"".join(bodies).decode() == text


# -- retention ------------------------------------------------------------------------------------


async def stats_of(api: httpx.AsyncClient, path: str, **params: str) -> dict[str, Any]:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_stats_before_and_after_a_purge_agree(api: httpx.AsyncClient,
                                                    snip: Snip) -> None:
    assert snip.stats is not None
    a, b = await new_link(api, "keep-a"), await new_link(api, "keep-b")
    start = TODAY - timedelta(days=120)
    await add_clicks(snip.engine, a, mixed_clicks(121, start))
    await add_clicks(snip.engine, b, mixed_clicks(50, TODAY - timedelta(days=100))[::3])
    before_raw = await count_raw(snip.engine)
    queries = [(f"/api/v1/links/{a}/stats", {"from": start.isoformat(), "to": NOW.isoformat()}),
               (f"/api/v1/links/{b}/stats", {"from": start.isoformat(), "to": NOW.isoformat()}),
               (f"/api/v1/links/{a}/stats", {"from": (TODAY - timedelta(days=95)).isoformat(),
                                            "to": (TODAY - timedelta(days=85)).isoformat()}),
               ("/api/v1/stats", {"from": start.isoformat(), "to": NOW.isoformat()})]
    before = [await stats_of(api, path, **params) for path, params in queries]

    result = await snip.stats.purge(90)

    assert len(result.days) == 30  # days -120 .. -91
    assert result.days == sorted(result.days)
    after_raw = await count_raw(snip.engine)
    assert after_raw == before_raw - result.clicks and result.clicks > 0
    async with snip.engine.connect() as conn:
        oldest = await conn.scalar(select(func.min(clicks.c.ts)))
        rolled = await conn.scalar(select(func.sum(click_daily.c.humans + click_daily.c.bots))
                                   .where(click_daily.c.dimension == "total"))
    assert oldest.replace(tzinfo=UTC) >= TODAY - timedelta(days=90)
    assert rolled == result.clicks
    after = [await stats_of(api, path, **params) for path, params in queries]
    assert after == before
    assert before[0]["total"] > 0 and before[2]["total"] > 0

    # Hourly: totals still agree; a rolled-up day's clicks sit in its first hour.
    hourly = {"from": (TODAY - timedelta(days=95)).isoformat(),
              "to": (TODAY - timedelta(days=85)).isoformat(), "interval": "hour"}
    hours = await stats_of(api, f"/api/v1/links/{a}/stats", **hourly)
    assert (hours["total"], hours["humans"], hours["bots"]) == \
        (before[2]["total"], before[2]["humans"], before[2]["bots"])
    purged_day = TODAY - timedelta(days=92)
    by_start = {datetime.fromisoformat(h["start"]): h["total"] for h in hours["series"]}
    day_total = next(d["total"] for d in before[2]["series"]
                     if datetime.fromisoformat(d["start"]) == purged_day)
    assert by_start[purged_day] == day_total
    assert all(by_start[purged_day + timedelta(hours=h)] == 0 for h in range(1, 24))

    # Again: nothing left to purge, nothing changes.
    again = await snip.stats.purge(90)
    assert again.clicks == 0 and again.days == []
    assert [await stats_of(api, path, **params) for path, params in queries] == before


async def test_late_clicks_for_a_purged_day_add_up(api: httpx.AsyncClient,
                                                   snip: Snip) -> None:
    assert snip.stats is not None
    code = await new_link(api, "late")
    old = TODAY - timedelta(days=200)
    await add_clicks(snip.engine, code, [C(old + timedelta(hours=1), browser="Firefox")] * 3)
    await snip.stats.purge(90)
    # A click of that day arrives late (say, a redelivered batch): the next purge adds it up.
    await add_clicks(snip.engine, code, [C(old + timedelta(hours=9), browser="Firefox", bot=True)])
    params = {"from": (old - timedelta(days=1)).isoformat(),
              "to": (old + timedelta(days=2)).isoformat()}
    before = await stats_of(api, f"/api/v1/links/{code}/stats", **params)
    assert (before["total"], before["bots"]) == (4, 1)
    assert (await snip.stats.purge(90)).clicks == 1
    after = await stats_of(api, f"/api/v1/links/{code}/stats", **params)
    assert after == before
    assert after["top"]["browsers"] == [{"value": "Firefox", "total": 4, "humans": 3, "bots": 1}]


async def test_concurrent_purges_count_each_click_once(settings: Settings) -> None:
    """Several processes purging at once (each its own engine) neither lose nor double clicks."""
    async with running(settings) as one, running(settings, migrate=False) as two, \
            running(settings, migrate=False) as three:
        assert one.stats and two.stats and three.stats
        start = TODAY - timedelta(days=40)
        await one.links.create(NewLink(url="https://example.com/busy", code="busy"))
        await add_clicks(one.engine, "busy", mixed_clicks(40, start) * 5)
        win = one.stats.window(start, TODAY)
        system = Actor.system()
        before = await one.stats.link_stats(system, "busy", win)
        results = await asyncio.gather(*(s.stats.purge(10) for s in (one, two, three)
                                          if s.stats is not None))
        assert sum(r.clicks for r in results) == before.total - sum(
            b.humans + b.bots for b in before.series if b.start >= TODAY - timedelta(days=10))
        assert await two.stats.link_stats(system, "busy", win) == before


async def test_retention_zero_keeps_everything(settings: Settings) -> None:
    async with running(settings.model_copy(update={"click_retention_days": 0})) as s:
        assert s.stats is not None
        await add_clicks(s.engine, "forever", [C(TODAY - timedelta(days=3000))])
        s.stats.start_purging()  # retention off: no task
        assert (await s.stats.purge()).clicks == 0
        assert await count_raw(s.engine) == 1


async def test_the_server_purges_on_a_schedule(settings: Settings) -> None:
    from asgi_lifespan import LifespanManager

    from snip.bootstrap import create_app

    application = create_app(settings.model_copy(update={"click_retention_days": 30,
                                                         "click_purge_interval": 1.0}))
    async with LifespanManager(application):
        snip: Snip = application.state.snip
        await add_clicks(snip.engine, "sched", [C(TODAY - timedelta(days=31, hours=-2)),
                                                C(TODAY - timedelta(days=29))])
        for _ in range(100):
            if await count_raw(snip.engine) == 1:
                break
            await asyncio.sleep(0.1)
        assert await count_raw(snip.engine) == 1
        assert snip.stats is not None
        await snip.links.create(NewLink(url="https://example.com/sched", code="sched"))
        win = snip.stats.window(TODAY - timedelta(days=40), NOW)
        assert (await snip.stats.link_stats(Actor.system(), "sched", win)).total == 2


async def test_real_keys_read_stats_of_their_own_links_only(api: httpx.AsyncClient,
                                                            snip: Snip) -> None:
    admins = await new_link(api, "admins")
    bob = {"Authorization": f"Bearer {await key_for(snip, 'bob')}"}
    made = await api.post("/api/v1/links", json={"url": "https://example.com/b", "code": "bobs"},
                          headers=bob)
    assert made.status_code == 201, made.text
    await add_clicks(snip.engine, "bobs", [C(NOW - timedelta(hours=2))])
    await add_clicks(snip.engine, admins, [C(NOW - timedelta(hours=2))])

    own = await api.get("/api/v1/links/bobs/stats", headers=bob)
    assert own.status_code == 200 and own.json()["total"] == 1
    assert (await api.get("/api/v1/links/bobs/clicks", headers=bob)).json()["items"]
    for path in (f"/api/v1/links/{admins}/stats", f"/api/v1/links/{admins}/clicks"):
        response = await api.get(path, headers=bob)
        assert response.status_code == 404, path
    assert (await api.get("/api/v1/stats", headers=bob)).status_code == 403
    nobody = await api.get("/api/v1/links/bobs/stats", headers={"Authorization": ""})
    assert nobody.status_code == 401
    assert (await api.get("/api/v1/links/bobs/stats")).json()["total"] == 1  # the admin
