"""The HTTP API through an ASGI client: create, read, list, change, delete, and the redirect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from snip.bootstrap import Snip

PROBLEM = "application/problem+json"


async def create(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# -- create ---------------------------------------------------------------------------------------


async def test_create_returns_201_with_the_link(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/links",
        json={"url": "HTTPS://Example.COM:443/Path?q=1#top", "title": "Example",
              "tags": ["Docs", "docs", " team "]},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["url"] == "https://example.com/Path?q=1#top"
    assert body["short_url"] == f"http://snip.test/{body['code']}"
    assert len(body["code"]) == 7
    assert body["title"] == "Example"
    assert body["tags"] == ["docs", "team"]
    assert body["redirect_status"] == 302
    assert body["expires_at"] is None and body["max_visits"] is None
    assert response.headers["location"] == f"/api/v1/links/{body['code']}"
    created = datetime.fromisoformat(body["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=10)


async def test_each_create_gets_a_new_code_unless_reuse(client: httpx.AsyncClient) -> None:
    first = await create(client, url="https://example.com/same")
    second = await create(client, url="https://example.com/same")
    assert first["code"] != second["code"]

    reused_a = await client.post("/api/v1/links", json={"url": "https://example.com/r",
                                                       "reuse": True})
    reused_b = await client.post("/api/v1/links", json={"url": "HTTPS://EXAMPLE.com:443/r",
                                                       "reuse": True})
    assert reused_a.status_code == 201
    assert reused_b.status_code == 200
    assert reused_a.json()["code"] == reused_b.json()["code"]


async def test_reuse_default_comes_from_settings(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from asgi_lifespan import LifespanManager

    from snip.bootstrap import create_app

    app = create_app(settings.model_copy(update={"reuse_default": True}))
    async with LifespanManager(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://snip.test"
    ) as c:
        a = (await c.post("/api/v1/links", json={"url": "https://example.com/x"})).json()
        b = (await c.post("/api/v1/links", json={"url": "https://example.com/x"})).json()
        c_ = (await c.post("/api/v1/links", json={"url": "https://example.com/x",
                                                  "reuse": False})).json()
    assert a["code"] == b["code"]
    assert c_["code"] != a["code"]


async def test_reuse_skips_links_that_can_run_out(client: httpx.AsyncClient) -> None:
    limited = await create(client, url="https://example.com/l", max_visits=3, reuse=True)
    plain = await client.post("/api/v1/links", json={"url": "https://example.com/l",
                                                    "reuse": True})
    assert plain.status_code == 201
    assert plain.json()["code"] != limited["code"]


async def test_disabled_link_is_not_handed_out_again(client: httpx.AsyncClient) -> None:
    first = await create(client, url="https://example.com/d", reuse=True)
    await client.patch(f"/api/v1/links/{first['code']}", json={"disabled": True})
    again = await client.post("/api/v1/links", json={"url": "https://example.com/d",
                                                    "reuse": True})
    assert again.status_code == 201
    assert again.json()["code"] != first["code"]


async def test_custom_code_and_conflict(client: httpx.AsyncClient) -> None:
    made = await create(client, url="https://example.com/a", code="team-wiki_2")
    assert made["code"] == "team-wiki_2"
    taken = await client.post("/api/v1/links", json={"url": "https://example.com/b",
                                                    "code": "team-wiki_2"})
    assert taken.status_code == 409
    assert taken.headers["content-type"] == PROBLEM
    assert taken.json()["type"] == "/problems/code-taken"
    assert (await client.get("/api/v1/links/team-wiki_2")).json()["url"] == "https://example.com/a"


@pytest.mark.parametrize("code", ["api", "Docs", "HEALTHZ", "metrics", "r", "shorten", "static"])
async def test_reserved_codes_are_refused(client: httpx.AsyncClient, code: str) -> None:
    response = await client.post("/api/v1/links", json={"url": "https://example.com", "code": code})
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/invalid-code"


@pytest.mark.parametrize("code", ["has space", "slash/", "dot.", "ümlaut", "x" * 65, ""])
async def test_malformed_codes_are_refused(client: httpx.AsyncClient, code: str) -> None:
    response = await client.post("/api/v1/links", json={"url": "https://example.com", "code": code})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "unsupported-scheme"),
        (" javascript:alert(1)", None),
        ("java\tscript:alert(1)", None),
        ("ftp://example.com/file", "unsupported-scheme"),
        ("//evil.example/x", "scheme-relative"),
        ("https://good.com@evil.example/", "credentials"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://exa%0d%0ample.com/", None),
        ("https://example.com/\r\nSet-Cookie: x=1", None),
        ("https://example.com/" + "a" * 8001, "too-long"),
        ("http://snip.test/abc", "self-reference"),
        ("http://SNIP.test.:80/abc", "self-reference"),
        ("example.com/no-scheme", "missing-scheme"),
    ],
)
async def test_invalid_urls_get_422_problem_and_change_nothing(
    client: httpx.AsyncClient, url: str, reason: str | None
) -> None:
    response = await client.post("/api/v1/links", json={"url": url})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "/problems/invalid-url"
    assert body["status"] == 422
    assert body["detail"]
    if reason:
        assert body["reason"] == reason
    listing = (await client.get("/api/v1/links")).json()
    assert listing["total"] == 0


async def test_intranet_and_private_destinations_are_allowed(client: httpx.AsyncClient) -> None:
    for url in ["http://intranet/wiki", "http://10.1.2.3:8080/x", "http://[fd00::1]/"]:
        response = await client.post("/api/v1/links", json={"url": url})
        assert response.status_code == 201, (url, response.text)


async def test_schema_errors_are_problem_details(client: httpx.AsyncClient) -> None:
    for body in [{}, {"url": 5}, {"url": "https://e.com", "redirect_status": 303},
                 {"url": "https://e.com", "max_visits": 0}, {"url": "https://e.com", "nope": 1}]:
        response = await client.post("/api/v1/links", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/validation-error"
    broken = await client.post("/api/v1/links", content=b"{not json",
                               headers={"content-type": "application/json"})
    assert broken.status_code == 422


async def test_expiry_must_be_in_the_future(client: httpx.AsyncClient) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = await client.post("/api/v1/links", json={"url": "https://e.com", "expires_at": past})
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/invalid-link"


# -- read, list, change, delete -------------------------------------------------------------------


async def test_get_unknown_link_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/links/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_list_pages_searches_filters_and_orders(client: httpx.AsyncClient) -> None:
    for i in range(7):
        await create(client, url=f"https://example.com/page/{i}", title=f"Page {i}",
                     tags=["even" if i % 2 == 0 else "odd", "all"])
    await create(client, url="https://other.org/", title="Quarterly REPORT 100%")

    page1 = (await client.get("/api/v1/links", params={"per_page": 3})).json()
    page3 = (await client.get("/api/v1/links", params={"per_page": 3, "page": 3})).json()
    assert page1["total"] == 8 and page1["pages"] == 3
    assert len(page1["items"]) == 3 and len(page3["items"]) == 2
    assert page1["items"][0]["url"] == "https://other.org/"  # newest first by default

    oldest = (await client.get("/api/v1/links", params={"order": "created_at"})).json()
    assert oldest["items"][0]["url"] == "https://example.com/page/0"

    found = (await client.get("/api/v1/links", params={"q": "report"})).json()
    assert [i["url"] for i in found["items"]] == ["https://other.org/"]
    literal = (await client.get("/api/v1/links", params={"q": "100%"})).json()
    assert literal["total"] == 1
    no_wildcard = (await client.get("/api/v1/links", params={"q": "_"})).json()
    assert no_wildcard["total"] == 0

    even = (await client.get("/api/v1/links", params={"tag": "even"})).json()
    assert even["total"] == 4
    both = (await client.get("/api/v1/links", params=[("tag", "odd"), ("tag", "all")])).json()
    assert both["total"] == 3
    by_code = (await client.get("/api/v1/links", params={"order": "code"})).json()
    codes = [i["code"] for i in by_code["items"]]
    assert codes == sorted(codes)


async def test_patch_changes_only_given_fields(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/old", title="Old", tags=["a"])
    code = link["code"]
    response = await client.patch(f"/api/v1/links/{code}",
                                  json={"url": "https://example.com/new", "redirect_status": 301})
    assert response.status_code == 200
    body = response.json()
    assert body["url"] == "https://example.com/new"
    assert body["redirect_status"] == 301
    assert body["title"] == "Old" and body["tags"] == ["a"]
    assert body["updated_at"] > link["updated_at"]

    cleared = (await client.patch(f"/api/v1/links/{code}", json={"title": None, "tags": []})).json()
    assert cleared["title"] is None and cleared["tags"] == []

    bad = await client.patch(f"/api/v1/links/{code}", json={"url": "javascript:x"})
    assert bad.status_code == 422
    assert (await client.get(f"/api/v1/links/{code}")).json()["url"] == "https://example.com/new"
    assert (await client.patch("/api/v1/links/missing", json={"title": "x"})).status_code == 404


async def test_delete(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/gone")
    assert (await client.delete(f"/api/v1/links/{link['code']}")).status_code == 204
    assert (await client.get(f"/api/v1/links/{link['code']}")).status_code == 404
    assert (await client.delete(f"/api/v1/links/{link['code']}")).status_code == 404


# -- the redirect ---------------------------------------------------------------------------------


async def test_redirect_uses_the_links_status_and_location(client: httpx.AsyncClient) -> None:
    for status in (301, 302, 307, 308):
        link = await create(client, url=f"https://example.com/{status}?a=ü",
                            redirect_status=status)
        response = await client.get(f"/{link['code']}")
        assert response.status_code == status
        assert response.headers["location"] == f"https://example.com/{status}?a=%C3%BC"
        if status in (301, 308):
            assert response.headers["cache-control"] == "private, max-age=300"
        else:
            assert "cache-control" not in response.headers
        head = await client.head(f"/{link['code']}")
        assert head.status_code == status
        assert head.headers["location"] == response.headers["location"]


async def test_unknown_code_is_a_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/doesNotExist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Link not found" in response.text


async def test_expired_link_is_a_410_page(client: httpx.AsyncClient, snip: Snip) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    link = await create(client, url="https://example.com/e", expires_at=soon)
    assert (await client.get(f"/{link['code']}")).status_code == 302
    await asyncio.sleep(0.4)
    response = await client.get(f"/{link['code']}")
    assert response.status_code == 410
    assert "no longer available" in response.text


async def test_visit_limit_gives_410_after_the_last_visit(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/v", max_visits=2)
    assert (await client.head(f"/{link['code']}")).status_code == 302  # HEAD does not count
    assert (await client.get(f"/{link['code']}")).status_code == 302
    assert (await client.get(f"/{link['code']}")).status_code == 302
    assert (await client.get(f"/{link['code']}")).status_code == 410
    assert (await client.head(f"/{link['code']}")).status_code == 410
    assert (await client.get(f"/api/v1/links/{link['code']}")).json()["visits"] == 2


async def test_visit_limit_is_exact_under_concurrency(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/c", max_visits=10)
    results = await asyncio.gather(*[client.get(f"/{link['code']}") for _ in range(40)])
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(302) == 10
    assert statuses.count(410) == 30


async def test_edits_and_deletes_reach_the_redirect_at_once(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/before")
    code = link["code"]
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/before"
    await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/after"})
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/after"
    await client.patch(f"/api/v1/links/{code}", json={"disabled": True})
    assert (await client.get(f"/{code}")).status_code == 410
    await client.patch(f"/api/v1/links/{code}", json={"disabled": False})
    assert (await client.get(f"/{code}")).status_code == 302
    await client.delete(f"/api/v1/links/{code}")
    assert (await client.get(f"/{code}")).status_code == 404


async def test_a_code_cached_as_unknown_works_once_created(client: httpx.AsyncClient) -> None:
    assert (await client.get("/later")).status_code == 404  # now negatively cached
    await create(client, url="https://example.com/later", code="later")
    assert (await client.get("/later")).status_code == 302


async def test_redirect_counts_visits_off_the_request(client: httpx.AsyncClient, snip: Snip) -> None:
    link = await create(client, url="https://example.com/count")
    for _ in range(5):
        await client.get(f"/{link['code']}")
    await client.head(f"/{link['code']}")
    await snip.clicks.flush()
    assert (await client.get(f"/api/v1/links/{link['code']}")).json()["visits"] == 5


async def test_preview_page_escapes_and_does_not_redirect(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/?q=<script>alert(1)</script>",
                        title="<b>Title</b>")
    response = await client.get(f"/{link['code']}+")
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "<script>" not in response.text
    assert "&lt;b&gt;Title&lt;/b&gt;" in response.text
    assert "https://example.com/?q=%3Cscript%3Ealert(1)%3C/script%3E" in response.text
    assert (await client.get("/nope+")).status_code == 404


# -- the original design's routes -----------------------------------------------------------------


async def test_original_shorten_and_r_routes(client: httpx.AsyncClient) -> None:
    response = await client.post("/shorten", json={"url": "https://example.com/original"})
    assert response.status_code == 201
    body = response.json()
    assert body["short_url"] == f"http://snip.test/r/{body['code']}"
    redirect = await client.get(f"/r/{body['code']}")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://example.com/original"
    assert (await client.get("/r/unknown")).status_code == 404


async def test_r_route_always_answers_302(client: httpx.AsyncClient) -> None:
    link = await create(client, url="https://example.com/p", redirect_status=301)
    assert (await client.get(f"/r/{link['code']}")).status_code == 302
    assert (await client.get(f"/{link['code']}")).status_code == 301


async def test_shorten_refuses_bad_urls_with_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/shorten", json={"url": "javascript:alert(1)"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


# -- pages and docs -------------------------------------------------------------------------------


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/links" in spec["paths"]
    assert "/api/v1/links/{code}" in spec["paths"]
    assert "/shorten" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_browser_form_creates_a_link_and_explains_errors(client: httpx.AsyncClient) -> None:
    home = await client.get("/")
    assert home.status_code == 200 and "<form" in home.text
    made = await client.post("/", data={"url": "https://example.com/form"})
    assert made.status_code == 201
    assert "https://example.com/form" in made.text
    bad = await client.post("/", data={"url": "javascript:alert(1)"},
                            headers={"accept": "text/html"})
    assert bad.status_code == 422
    assert "javascript" in bad.text and "<form" in bad.text
    assert (await client.get("/api/v1/links")).json()["total"] == 1


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


async def test_reuse_never_hands_out_a_link_to_another_url(
    client: httpx.AsyncClient, snip: Snip
) -> None:
    from sqlalchemy import update

    from snip.adapters.sql.schema import links

    first = await create(client, url="https://example.com/mine", reuse=True)
    # Forge what a digest collision would look like: the reusable link now points elsewhere.
    async with snip.engine.begin() as conn:
        await conn.execute(update(links).where(links.c.code == first["code"])
                           .values(url="https://evil.example/"))
    again = await client.post("/api/v1/links", json={"url": "https://example.com/mine",
                                                    "reuse": True})
    assert again.status_code == 201
    assert again.json()["code"] != first["code"]
    assert again.json()["url"] == "https://example.com/mine"
