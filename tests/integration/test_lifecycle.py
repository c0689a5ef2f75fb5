"""Password-protected links, QR codes and bulk creation, through the whole app."""

from __future__ import annotations

import asyncio
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from snip.adapters.sql.schema import links as links_table
from snip.bootstrap import Snip, create_app
from snip.config import Settings
from tests.conftest import BASE_URL

FORM = {"content-type": "application/x-www-form-urlencoded"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def create(client: httpx.AsyncClient, **body: object) -> dict[str, Any]:
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# -- passwords -------------------------------------------------------------------------------------


async def test_protected_link_shows_a_form_and_redirects_only_with_the_password(
        client: httpx.AsyncClient, snip: Snip) -> None:
    link = await create(client, url="https://example.com/secret", password="open sesame")
    assert link["password_protected"] is True
    assert "password" not in link and "password_hash" not in link
    code = link["code"]

    form = await client.get(f"/{code}")
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert form.headers["cache-control"] == "no-store"
    assert "noindex" in form.headers["x-robots-tag"]
    assert "location" not in form.headers
    assert 'type="password"' in form.text and 'method="post"' in form.text
    assert "https://example.com/secret" not in form.text  # the destination stays hidden

    wrong = await client.post(f"/{code}", content="password=guess", headers=FORM)
    assert wrong.status_code == 401
    assert "location" not in wrong.headers
    assert "Wrong password" in wrong.text and "example.com/secret" not in wrong.text

    right = await client.post(f"/{code}", content="password=open+sesame", headers=FORM)
    assert right.status_code == 303
    assert right.headers["location"] == "https://example.com/secret"
    # The visit counts (as a redirect's would), once the click writer has flushed.
    for _ in range(100):
        if (await client.get(f"/api/v1/links/{code}")).json()["visits"] == 1:
            break
        await asyncio.sleep(0.05)
    assert (await client.get(f"/api/v1/links/{code}")).json()["visits"] == 1

    # The stored value is an argon2id hash; the API never shows it.
    async with snip.engine.connect() as conn:
        stored = await conn.scalar(select(links_table.c.password_hash)
                                   .where(links_table.c.code == code))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "open sesame" not in stored
    read = await client.get(f"/api/v1/links/{code}")
    assert stored not in read.text and read.json()["password_protected"] is True
    listing = await client.get("/api/v1/links")
    assert "argon2" not in listing.text


async def test_protected_link_counts_a_visit_only_after_the_password(
        client: httpx.AsyncClient, snip: Snip) -> None:
    code = (await create(client, url="https://example.com/v", password="pw-1234",
                         max_visits=1))["code"]
    assert (await client.get(f"/{code}")).status_code == 200
    assert (await client.post(f"/{code}", content="password=nope", headers=FORM)).status_code \
        == 401
    ok = await client.post(f"/{code}", content="password=pw-1234", headers=FORM)
    assert ok.status_code == 303
    # Its one visit is used: now it is gone, before any form is shown.
    assert (await client.post(f"/{code}", content="password=pw-1234", headers=FORM)
            ).status_code == 410
    assert (await client.get(f"/{code}")).status_code == 410


async def test_head_and_legacy_path_of_a_protected_link_show_the_form(
        client: httpx.AsyncClient) -> None:
    code = (await create(client, url="https://example.com/h", password="hunter22"))["code"]
    head = await client.head(f"/{code}")
    assert head.status_code == 200
    assert "location" not in head.headers
    assert head.headers["cache-control"] == "no-store"
    assert head.content == b""
    get = await client.get(f"/{code}")
    assert int(head.headers["content-length"]) == len(get.content)

    legacy = await client.get(f"/r/{code}")
    assert legacy.status_code == 200 and 'type="password"' in legacy.text
    posted = await client.post(f"/r/{code}", content="password=hunter22", headers=FORM)
    assert posted.status_code == 303
    assert posted.headers["location"] == "https://example.com/h"


async def test_gone_and_disabled_apply_before_the_password(client: httpx.AsyncClient) -> None:
    code = (await create(client, url="https://example.com/d", password="hunter22"))["code"]
    assert (await client.patch(f"/api/v1/links/{code}", json={"disabled": True})).status_code \
        == 200
    assert (await client.get(f"/{code}")).status_code == 410
    assert (await client.post(f"/{code}", content="password=hunter22", headers=FORM)
            ).status_code == 410

    soon = datetime.now(UTC) + timedelta(seconds=1)
    code2 = (await create(client, url="https://example.com/e", password="hunter22",
                          expires_at=soon.isoformat()))["code"]
    assert (await client.get(f"/{code2}")).status_code == 200
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert (await client.get(f"/{code2}")).status_code == 410


async def test_patch_sets_and_removes_a_password(client: httpx.AsyncClient) -> None:
    code = (await create(client, url="https://example.com/p"))["code"]
    assert (await client.get(f"/{code}")).status_code == 302

    set_ = await client.patch(f"/api/v1/links/{code}", json={"password": "new-pass"})
    assert set_.status_code == 200 and set_.json()["password_protected"] is True
    assert (await client.get(f"/{code}")).status_code == 200  # the form, at once (cache cleared)
    assert (await client.post(f"/{code}", content="password=new-pass", headers=FORM)
            ).status_code == 303

    removed = await client.patch(f"/api/v1/links/{code}", json={"password": None})
    assert removed.json()["password_protected"] is False
    plain = await client.get(f"/{code}")
    assert plain.status_code == 302 and plain.headers["location"] == "https://example.com/p"


async def test_password_rules_are_enforced(client: httpx.AsyncClient) -> None:
    short = await client.post("/api/v1/links", json={"url": "https://example.com/", "password": "ab"})
    assert short.status_code == 422
    control = await client.post("/api/v1/links",
                                json={"url": "https://example.com/", "password": "ab\x00cd"})
    assert control.status_code == 422


async def test_unknown_or_plain_codes_get_no_form(client: httpx.AsyncClient) -> None:
    assert (await client.post("/nosuchcode", content="password=x", headers=FORM)).status_code \
        == 404
    code = (await create(client, url="https://example.com/plain"))["code"]
    assert (await client.post(f"/{code}", content="password=x", headers=FORM)).status_code == 404
    # snip's own single-segment routes keep their answers.
    assert (await client.post("/healthz")).status_code == 405


@pytest.fixture
async def unlimited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client on an app without password-attempt or creation limits."""
    app = create_app(settings.model_copy(update={
        "rate_limit_password": "off", "rate_limit_password_link": "off",
        "rate_limit_create": "off", "rate_limit_anonymous_create": "off"}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
            yield c


async def test_hashing_does_not_block_the_event_loop(unlimited: httpx.AsyncClient) -> None:
    client = unlimited
    code = (await create(client, url="https://example.com/slow", password="hunter22"))["code"]
    from snip.service_layer.passwords import hash_password_sync, verify_sync

    sample = hash_password_sync("hunter22")
    began = time.perf_counter()
    verify_sync(sample, "wrong-guess")
    one_hash = time.perf_counter() - began  # what the loop would stall for, per attempt
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    replies = await asyncio.gather(*[
        client.post(f"/{code}", content="password=wrong-guess", headers=FORM) for _ in range(8)])
    stop = True
    await task
    assert all(r.status_code == 401 for r in replies)
    # Hashing on the loop would stall it once per attempt, each time for a whole hash.
    stalls = [g for g in gaps if g >= 0.8 * one_hash]
    assert len(stalls) < 4, (one_hash, sorted(gaps)[-10:])


async def test_password_attempts_are_rate_limited_per_address(
        client: httpx.AsyncClient, snip: Snip) -> None:
    limit = int(snip.settings.rate_limit_password.split("/")[0])  # 5/minute by default
    code = (await create(client, url="https://example.com/rl", password="hunter22"))["code"]
    statuses = []
    for _ in range(100):
        reply = await client.post(f"/{code}", content="password=guess", headers=FORM)
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            assert int(reply.headers["retry-after"]) >= 0
            assert "ratelimit-limit" in reply.headers
            break
    assert statuses[-1] == 429, statuses
    assert statuses[:-1] == [401] * limit
    # Even the right password waits now: guessing cannot go on beside it.
    right = await client.post(f"/{code}", content="password=hunter22", headers=FORM)
    assert right.status_code == 429 and "location" not in right.headers


# -- QR codes ----------------------------------------------------------------------------------------


async def test_qr_png_is_a_png_of_about_the_asked_size(client: httpx.AsyncClient) -> None:
    code = (await create(client, url="https://example.com/qr"))["code"]
    reply = await client.get(f"/api/v1/links/{code}/qr", params={"format": "png", "size": 300})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/png"
    assert "max-age" in reply.headers["cache-control"]
    data = reply.content
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height
    assert 150 < width <= 300


async def test_qr_svg_is_xml_and_encodes_the_short_url(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/qr-svg")
    reply = await client.get(f"/api/v1/links/{link['code']}/qr")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(reply.content)
    assert root.tag.endswith("svg")
    assert int(float(root.attrib["width"])) <= 256
    assert link["short_url"] in reply.text  # its <title>
    # The same content as a QR made from the short URL itself.
    import io

    import segno
    expected = io.BytesIO()
    segno.make(link["short_url"], error="m", micro=False).save(
        expected, kind="svg", scale=int(float(root.attrib["width"])) // 33, border=4,
        xmldecl=True, title=link["short_url"])
    assert reply.content == expected.getvalue()


async def test_qr_of_another_users_link_reads_as_not_found(
        user_client: Any, client: httpx.AsyncClient) -> None:
    alice = await user_client("alice")
    bob = await user_client("bob")
    code = (await create(alice, url="https://example.com/alice"))["code"]
    assert (await alice.get(f"/api/v1/links/{code}/qr")).status_code == 200
    assert (await bob.get(f"/api/v1/links/{code}/qr")).status_code == 404
    assert (await client.get(f"/api/v1/links/{code}/qr")).status_code == 200  # the admin


async def test_qr_bounds_and_unknown_codes(client: httpx.AsyncClient) -> None:
    code = (await create(client, url="https://example.com/qr-b"))["code"]
    assert (await client.get(f"/api/v1/links/{code}/qr", params={"size": 100_000})
            ).status_code == 422
    assert (await client.get(f"/api/v1/links/{code}/qr", params={"format": "gif"})
            ).status_code == 422
    assert (await client.get("/api/v1/links/nosuch/qr")).status_code == 404


# -- bulk ------------------------------------------------------------------------------------------


async def test_bulk_creates_what_it_can_and_reports_each_item(client: httpx.AsyncClient) -> None:
    taken = (await create(client, url="https://example.com/taken", code="taken"))["code"]
    reply = await client.post("/api/v1/links/bulk", json={"links": [
        {"url": "https://example.com/1", "title": "one"},
        {"url": "not a url"},
        {"url": "https://example.com/2", "code": taken},
        {"url": "https://example.com/3", "code": "bulk-3", "tags": ["a"]},
        {"nope": 1},
        {"url": "https://example.com/4", "password": "hunter22"},
    ]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [201, 422, 409, 201, 422, 201]
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert body["created"] == 3 and body["failed"] == 3
    assert body["results"][0]["link"]["title"] == "one"
    assert body["results"][1]["problem"]["type"] == "/problems/invalid-url"
    assert body["results"][2]["problem"]["type"] == "/problems/code-taken"
    assert body["results"][5]["link"]["password_protected"] is True
    # The created ones exist and redirect.
    assert (await client.get("/bulk-3")).headers["location"] == "https://example.com/3"
    code1 = body["results"][0]["link"]["code"]
    assert (await client.get(f"/api/v1/links/{code1}")).status_code == 200


async def test_bulk_links_belong_to_the_caller(user_client: Any) -> None:
    bob = await user_client("bob")
    reply = await bob.post("/api/v1/links/bulk", json={"links": [
        {"url": "https://example.com/b1"}, {"url": "https://example.com/b2"}]})
    assert reply.status_code == 200
    codes = [r["link"]["code"] for r in reply.json()["results"]]
    alice = await user_client("alice")
    for code in codes:
        assert (await bob.get(f"/api/v1/links/{code}")).status_code == 200
        assert (await alice.get(f"/api/v1/links/{code}")).status_code == 404


async def test_bulk_refuses_more_than_1000_links_and_non_lists(
        unlimited: httpx.AsyncClient) -> None:
    client = unlimited
    too_many = [{"url": f"https://example.com/{i}"} for i in range(1001)]
    reply = await client.post("/api/v1/links/bulk", json={"links": too_many})
    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/problem+json"

    assert (await client.post("/api/v1/links/bulk", json=[{"url": "https://x.example"}])
            ).status_code == 422
    assert (await client.post("/api/v1/links/bulk", content=b"{not json")).status_code == 422

    exactly = [{"url": f"https://example.com/{i}"} for i in range(1000)]
    ok = await client.post("/api/v1/links/bulk", json={"links": exactly})
    assert ok.status_code == 200 and ok.json()["created"] == 1000
    assert ok.json()["failed"] == 0


# -- the bulk store under `snip import` ---------------------------------------------------------


async def test_import_store_keeps_the_first_of_a_code_and_redraws_clashing_random_codes(
        services: Snip) -> None:
    from snip.adapters.sql.bulk import SqlLinkImportStore
    from snip.service_layer.importer import Importer, RawRow, Rules
    from snip.service_layer.ports import ImportRow

    importer = Importer(SqlLinkImportStore(services.engine), Rules(base_url=BASE_URL), workers=1)
    report = await importer.run([
        RawRow(1, "https://example.com/first", "dup", tags=["t1"]),
        RawRow(2, "https://example.com/second", "dup", tags=["t2"]),
        RawRow(3, "https://example.com/same"),
        RawRow(4, "https://example.com/same"),
    ])
    assert (report.created, report.skipped, report.invalid) == (2, 2, 0)
    dup = await services.links.get("dup")
    assert dup.url == "https://example.com/first" and dup.tags == ("t1",)

    # A random code that is taken already is drawn again, not skipped.
    store = SqlLinkImportStore(services.engine)
    now = datetime.now(UTC)
    clash = ImportRow("dup", "https://example.com/new", "d" * 64, None, None, (), "-", now,
                      None, None, 0, False, 302, None, "-:" + "d" * 32, True)
    outcome = await store.add_many([clash])
    assert (outcome.created, outcome.skipped) == (0, 0) and outcome.retry == [clash]
    report = await importer.run([RawRow(1, "https://example.com/new")])
    assert report.created == 1
