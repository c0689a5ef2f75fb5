"""Abuse defences through the HTTP API: the domain blocklist, plugged-in URL checkers, reports.

Every test runs on SQLite and PostgreSQL (the `settings` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from snip.adapters.sql.engine import make_engine
from snip.adapters.sql.migrate import upgrade_async
from snip.bootstrap import create_app, running
from snip.config import Settings
from snip.domain.accounts import Actor
from snip.domain.checks import host_key, host_of
from tests.conftest import BASE_URL, UserClient

PROBLEM = "application/problem+json"


async def shorten(client: httpx.AsyncClient, url: str, **extra: Any) -> str:
    reply = await client.post("/api/v1/links", json={"url": url, **extra})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["code"])


async def status_of(client: httpx.AsyncClient, code: str) -> int:
    return (await client.get(f"/{code}")).status_code


@asynccontextmanager
async def app_with(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database with other settings; an anonymous client on it."""
    application = create_app(settings.model_copy(update=changes))
    async with LifespanManager(application):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=application)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
            c.app = application  # type: ignore[attr-defined]
            yield c


# -- the blocklist at creation ----------------------------------------------------------------


async def test_a_blocked_domain_and_its_subdomains_cannot_be_shortened(
        client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/v1/blocklist", json={"domains": ["Phish.Example"],
                                                         "reason": "credential phishing"})
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"domains": ["phish.example"], "links": 0}
    before = (await client.get("/api/v1/links")).json()["total"]

    for url in ("https://phish.example/login", "http://PHISH.example./x",
                "https://deep.sub.phish.example/a?b=c", "https://phish.example:8443/"):
        refused = await client.post("/api/v1/links", json={"url": url})
        assert refused.status_code == 422, url
        assert refused.headers["content-type"] == PROBLEM
        body = refused.json()
        assert body["type"] == "/problems/blocked-url"
        assert "phish.example" in body["detail"]
    # Nothing was stored, not even with a custom code or through the original route.
    assert (await client.post("/api/v1/links", json={"url": "https://phish.example/",
                                                     "code": "mine"})).status_code == 422
    assert (await client.post("/shorten", json={"url": "https://phish.example/"})
            ).status_code == 422
    assert (await client.get("/api/v1/links")).json()["total"] == before
    assert (await client.get("/mine")).status_code == 404

    # Lookalikes are not subdomains.
    for url in ("https://notphish.example/", "https://phish.example.org/",
                "https://phish.example-login.net/"):
        await shorten(client, url)


async def test_the_home_page_form_says_why_a_url_is_refused(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/blocklist", json={"domains": ["phish.example"]})
    reply = await anon_client.post("/", content="url=https%3A%2F%2Fphish.example%2Flogin",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("text/html")
    assert "phish.example is on this service&#x27;s blocklist" in reply.text


async def test_idn_entries_match_links_in_either_spelling(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/blocklist", json={"domains": ["bücher.example"]})
    for url in ("https://bücher.example/", "https://www.xn--bcher-kva.example/",
                "https://BÜCHER.example/"):
        assert (await client.post("/api/v1/links", json={"url": url})).status_code == 422, url
    listed = (await client.get("/api/v1/blocklist")).json()["items"]
    assert [d["domain"] for d in listed] == ["xn--bcher-kva.example"]


async def test_bad_blocklist_entries_are_refused(client: httpx.AsyncClient) -> None:
    for bad in ("", "exa mple.com", "a..b", "http://"):
        reply = await client.post("/api/v1/blocklist", json={"domains": ["ok.example", bad]})
        assert reply.status_code == 422, bad
        assert reply.headers["content-type"] == PROBLEM
    # All or nothing: the good entry in a refused request was not added.
    assert (await client.get("/api/v1/blocklist")).json()["total"] == 0


async def test_changing_a_links_url_is_checked_too(client: httpx.AsyncClient) -> None:
    code = await shorten(client, "https://fine.example/")
    await client.post("/api/v1/blocklist", json={"domains": ["phish.example"]})
    reply = await client.patch(f"/api/v1/links/{code}", json={"url": "https://x.phish.example/"})
    assert reply.status_code == 422
    assert reply.json()["type"] == "/problems/blocked-url"
    assert (await client.get(f"/api/v1/links/{code}")).json()["url"] == "https://fine.example/"
    assert (await client.get(f"/{code}")).headers["location"] == "https://fine.example/"


# -- the blocklist on existing links ----------------------------------------------------------


async def test_blocking_a_domain_blocks_its_existing_links_at_once(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    blocked = [await shorten(client, "https://example.com/a"),
               await shorten(client, "https://www.example.com/b"),
               await shorten(client, "http://a.b.EXAMPLE.com:8080/c")]
    kept = [await shorten(client, "https://notexample.com/"),
            await shorten(client, "https://example.com.evil.net/"),
            await shorten(client, "https://example.org/")]
    for code in blocked + kept:  # every link is now in the redirect's caches
        assert await status_of(anon_client, code) == 302

    reply = await client.post("/api/v1/blocklist", json={"domains": ["example.com"]})
    assert reply.json() == {"domains": ["example.com"], "links": 3}

    for code in blocked:
        page = await anon_client.get(f"/{code}")
        assert page.status_code == 403
        assert "location" not in page.headers
        assert "This link has been blocked" in page.text
        preview = await anon_client.get(f"/{code}+")
        assert preview.status_code == 200
        assert "This link has been blocked" in preview.text
        assert "Continue to the destination" not in preview.text
    for code in kept:
        assert await status_of(anon_client, code) == 302
    listed = (await client.get("/api/v1/blocklist")).json()
    assert listed["items"][0]["domain"] == "example.com"
    assert listed["items"][0]["links"] == 3
    assert listed["items"][0]["source"] == "admin"

    # Blocking again changes nothing.
    again = await client.post("/api/v1/blocklist", json={"domains": ["EXAMPLE.com"]})
    assert again.status_code == 200
    assert again.json() == {"domains": [], "links": 0}

    reply = await client.delete("/api/v1/blocklist/example.com")
    assert reply.json() == {"domains": ["example.com"], "links": 3}
    for code in blocked + kept:
        assert await status_of(anon_client, code) == 302
    assert "Continue to the destination" in (await anon_client.get(f"/{blocked[0]}+")).text


async def test_unblocking_releases_only_what_no_other_entry_covers(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    parent = await shorten(client, "https://example.com/")
    child = await shorten(client, "https://sub.example.com/")
    await client.post("/api/v1/blocklist", json={"domains": ["sub.example.com"]})
    assert await status_of(anon_client, child) == 403
    assert await status_of(anon_client, parent) == 302
    await client.post("/api/v1/blocklist", json={"domains": ["example.com"]})
    assert await status_of(anon_client, parent) == 403

    # sub.example.com goes, but example.com still covers it.
    reply = await client.request("DELETE", "/api/v1/blocklist",
                                 json={"domains": ["sub.example.com"]})
    assert reply.json() == {"domains": ["sub.example.com"], "links": 0}
    assert await status_of(anon_client, child) == 403
    # Unblocking the parent while the child is listed keeps the child's links blocked.
    await client.post("/api/v1/blocklist", json={"domains": ["sub.example.com"]})
    reply = await client.delete("/api/v1/blocklist/example.com")
    assert reply.json()["links"] == 1
    assert await status_of(anon_client, parent) == 302
    assert await status_of(anon_client, child) == 403


async def test_a_blocked_link_given_a_new_url_redirects_again(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    code = await shorten(client, "https://phish.example/")
    await client.post("/api/v1/blocklist", json={"domains": ["phish.example"]})
    assert await status_of(anon_client, code) == 403
    reply = await client.patch(f"/api/v1/links/{code}", json={"url": "https://fixed.example/"})
    assert reply.status_code == 200, reply.text
    assert (await anon_client.get(f"/{code}")).headers["location"] == "https://fixed.example/"
    # And unblocking the old domain later touches nothing.
    assert (await client.delete("/api/v1/blocklist/phish.example")).json()["links"] == 0


async def test_a_disabled_link_is_blocked_and_stays_disabled(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    code = await shorten(client, "https://phish.example/")
    await client.patch(f"/api/v1/links/{code}", json={"disabled": True})
    await client.post("/api/v1/blocklist", json={"domains": ["phish.example"]})
    await client.delete("/api/v1/blocklist/phish.example")
    assert await status_of(anon_client, code) == 410


# -- settings and file ------------------------------------------------------------------------


async def test_setting_and_file_apply_to_existing_links_at_start(
        settings: Settings, tmp_path: Path) -> None:
    async with running(settings) as snip:
        codes = {url: (await snip.links.create(_new(url))).link.code
                 for url in ("https://a.from-setting.example/", "https://from-file.example/x",
                             "https://admin-added.example/", "https://fine.example/")}
        await snip.abuse.block(["admin-added.example"], actor=Actor.system())  # type: ignore[union-attr]
    listing = tmp_path / "blocklist.txt"
    listing.write_text("# phishing kits, from the feed\nfrom-file.example  # since May\n\n"
                       "*.also-from-file.example\n", encoding="utf-8")

    async with app_with(settings, blocklist=" From-Setting.example, other.example ",
                        blocklist_file=str(listing)) as c:
        for url, expected in (("https://a.from-setting.example/", 403),
                              ("https://from-file.example/x", 403),
                              ("https://admin-added.example/", 403),
                              ("https://fine.example/", 302)):
            assert await status_of(c, codes[url]) == expected, url
        refused = await c.post("/api/v1/links", json={"url": "https://x.also-from-file.example/"})
        assert refused.status_code == 422
        snip = c.app.state.snip  # type: ignore[attr-defined]
        sources = {d.domain: d.source for d in await snip.abuse.blocked_domains()}
        assert sources == {"from-setting.example": "setting", "other.example": "setting",
                           "from-file.example": "file", "also-from-file.example": "file",
                           "admin-added.example": "admin"}

    # A CLI command run from a shell without the variables changes nothing (only servers
    # apply the configuration).
    async with running(settings) as snip:
        assert len(await snip.abuse.blocked_domains()) == 5  # type: ignore[union-attr]

    # Started again without them: the configured entries go, and release their links; the
    # entry an admin added stays.
    async with app_with(settings) as c:
        assert await status_of(c, codes["https://a.from-setting.example/"]) == 302
        assert await status_of(c, codes["https://from-file.example/x"]) == 302
        assert await status_of(c, codes["https://admin-added.example/"]) == 403


async def test_a_bad_blocklist_setting_or_file_stops_the_start(
        settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SNIP_BLOCKLIST"):
        create_app(settings.model_copy(update={"blocklist": "fine.example,bad domain"}))
    with pytest.raises(ValueError, match="cannot read"):
        create_app(settings.model_copy(update={"blocklist_file": str(tmp_path / "none.txt")}))
    listing = tmp_path / "bad.txt"
    listing.write_text("ok.example\nnot a domain\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        create_app(settings.model_copy(update={"blocklist_file": str(listing)}))


def _new(url: str) -> Any:
    from snip.service_layer.links import NewLink

    return NewLink(url=url)


# -- plugged-in checkers ----------------------------------------------------------------------


async def test_a_checker_loaded_from_configuration_refuses_urls(settings: Settings) -> None:
    async with app_with(settings, url_checkers="tests.abuse_checker:words") as c:
        refused = await c.post("/api/v1/links", json={"url": "https://ok.example/evil-payload"})
        assert refused.status_code == 422
        assert refused.json()["type"] == "/problems/blocked-url"
        assert "malware" in refused.json()["detail"]
        assert (await c.post("/api/v1/links", json={"url": "https://ok.example/fine"})
                ).status_code == 201
        chain = c.app.state.snip.links.checker  # type: ignore[attr-defined]
        assert chain.names == ["blocklist", "words"]
        # The blocklist runs first: a blocked domain never reaches the (paid, remote) service.
        await c.app.state.snip.abuse.block(["bad.example"], actor=Actor.system())  # type: ignore[attr-defined]
        assert (await c.post("/api/v1/links", json={"url": "https://bad.example/"})
                ).status_code == 422
        assert chain.checkers[1].seen == ["https://ok.example/evil-payload",
                                          "https://ok.example/fine"]


@pytest.mark.parametrize(("factory", "status"), [
    ("broken_open", 201), ("slow_open", 201), ("broken_closed", 503), ("slow_closed", 503)])
async def test_a_failing_checker_fails_open_or_closed_as_it_says(
        settings: Settings, factory: str, status: int) -> None:
    async with app_with(settings, url_checkers=f"tests.abuse_checker:{factory}") as c:
        reply = await c.post("/api/v1/links", json={"url": "https://ok.example/"})
        assert reply.status_code == status, reply.text
        if status == 503:
            assert reply.headers["retry-after"]
            assert "try again" in reply.json()["detail"]
            assert (await c.get("/api/v1/links")).status_code in (401, 200)


@pytest.mark.parametrize("spec", ["tests.abuse_checker", "tests.no_such_module:make",
                                  "tests.abuse_checker:nothing", "tests.abuse_checker:not_a_checker"])
def test_a_checker_that_cannot_be_loaded_stops_the_start(settings: Settings, spec: str) -> None:
    with pytest.raises(ValueError, match="SNIP_URL_CHECKERS"):
        create_app(settings.model_copy(update={"url_checkers": spec}))


# -- reports ----------------------------------------------------------------------------------


async def test_anyone_may_report_and_admins_resolve_by_disabling(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient,
        user_client: UserClient) -> None:
    bob = await user_client("bob")
    code = await shorten(bob, "https://phish.example/login")
    other = await shorten(bob, "https://fine.example/")

    for body in ({"link": code, "reason": "phishing", "comment": "asks for my bank password"},
                 {"link": f"{BASE_URL}/{code}", "reason": "phishing"},
                 {"link": f"{BASE_URL}/{code}+", "reason": "spam"},
                 {"link": f"{BASE_URL}/r/{other}", "reason": "other"}):
        reply = await anon_client.post("/api/v1/reports", json=body)
        assert reply.status_code == 202, reply.text

    listed = (await client.get("/api/v1/reports", params={"status": "open"})).json()
    assert listed["total"] == 4
    mine = [r for r in listed["items"] if r["code"] == code]
    assert len(mine) == 3
    first = min(mine, key=lambda r: r["id"])
    assert first["url"] == "https://phish.example/login"
    assert first["owner"] == "bob"
    assert first["open_reports"] == 3
    assert first["comment"] == "asks for my bank password"
    assert first["reporter"] == "-"

    reply = await client.post(f"/api/v1/reports/{first['id']}/resolve",
                              json={"action": "disable"})
    assert reply.status_code == 200, reply.text
    assert sorted(reply.json()["resolved"]) == sorted(r["id"] for r in mine)
    assert reply.json()["report"]["status"] == "resolved"
    assert reply.json()["report"]["action"] == "disable"
    assert await status_of(anon_client, code) == 410
    assert await status_of(anon_client, other) == 302

    still_open = (await client.get("/api/v1/reports")).json()
    assert [r["code"] for r in still_open["items"]] == [other]
    everything = (await client.get("/api/v1/reports", params={"status": "all"})).json()
    assert everything["total"] == 4

    # An admin acting on bob's link is in the audit log, as is the resolution.
    accounts = anon_client._transport.app.state.snip.accounts  # type: ignore[attr-defined]
    entries, _ = await accounts.audit_log(Actor.system(), limit=50)
    actions = {(e.action, e.target) for e in entries}
    assert ("link.update", code) in actions
    assert ("report.resolve", code) in actions


async def test_resolving_by_blocking_the_domain_blocks_every_link_to_it(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    reported = await shorten(client, "https://login.phish.example/a")
    sibling = await shorten(client, "https://login.phish.example/b")
    cousin = await shorten(client, "https://www.phish.example/")
    await anon_client.post("/api/v1/reports", json={"link": reported, "reason": "phishing"})
    report_id = (await client.get("/api/v1/reports")).json()["items"][0]["id"]

    reply = await client.post(f"/api/v1/reports/{report_id}/resolve",
                              json={"action": "block-domain"})
    assert reply.status_code == 200, reply.text
    assert await status_of(anon_client, reported) == 403
    assert await status_of(anon_client, sibling) == 403
    assert await status_of(anon_client, cousin) == 302  # only the reported host by default
    listed = (await client.get("/api/v1/blocklist")).json()["items"]
    assert [(d["domain"], d["reason"]) for d in listed] == [("login.phish.example",
                                                             f"report {report_id}")]

    # A parent domain may be named instead.
    await anon_client.post("/api/v1/reports", json={"link": cousin, "reason": "phishing"})
    report_id = (await client.get("/api/v1/reports")).json()["items"][0]["id"]
    await client.post(f"/api/v1/reports/{report_id}/resolve",
                      json={"action": "block-domain", "domain": "phish.example"})
    assert await status_of(anon_client, cousin) == 403


async def test_dismissing_leaves_the_link_alone(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    code = await shorten(client, "https://fine.example/")
    await anon_client.post("/api/v1/reports", json={"link": code, "reason": "spam"})
    report_id = (await client.get("/api/v1/reports")).json()["items"][0]["id"]
    reply = await client.post(f"/api/v1/reports/{report_id}/resolve", json={"action": "dismiss"})
    assert reply.json()["report"]["action"] == "dismiss"
    assert await status_of(anon_client, code) == 302
    assert (await client.get("/api/v1/reports")).json()["total"] == 0
    missing = await client.post("/api/v1/reports/999999/resolve", json={"action": "dismiss"})
    assert missing.status_code == 404


async def test_a_report_never_tells_whether_a_code_exists(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    code = await shorten(client, "https://fine.example/")
    known = await anon_client.post("/api/v1/reports", json={"link": code, "reason": "spam"})
    unknown = await anon_client.post("/api/v1/reports", json={"link": "NoSuchCode",
                                                              "reason": "spam"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    reports = (await client.get("/api/v1/reports")).json()
    assert [r["code"] for r in reports["items"]] == [code]  # the unknown one was dropped

    for bad in ({"link": code, "reason": "boring"},
                {"link": "not a code!", "reason": "spam"},
                {"link": "https://elsewhere.example/abc", "reason": "spam"},
                {"link": code, "reason": "spam", "extra": 1}):
        assert (await anon_client.post("/api/v1/reports", json=bad)).status_code == 422, bad


async def test_reports_are_rate_limited_per_address(settings: Settings) -> None:
    async with app_with(settings, rate_limit_reports="3/hour") as c:
        replies = [await c.post("/api/v1/reports", json={"link": "abc", "reason": "spam"})
                   for _ in range(4)]
    assert [r.status_code for r in replies] == [202, 202, 202, 429]
    assert replies[3].headers["retry-after"]


# -- who may do what --------------------------------------------------------------------------


ADMIN_ONLY = [("GET", "/api/v1/blocklist", None),
              ("POST", "/api/v1/blocklist", {"domains": ["x.example"]}),
              ("DELETE", "/api/v1/blocklist/x.example", None),
              ("DELETE", "/api/v1/blocklist", {"domains": ["x.example"]}),
              ("GET", "/api/v1/reports", None),
              ("POST", "/api/v1/reports/1/resolve", {"action": "dismiss"})]


async def test_only_admins_manage_the_blocklist_and_reports(
        client: httpx.AsyncClient, anon_client: httpx.AsyncClient,
        user_client: UserClient) -> None:
    bob = await user_client("bob", scopes="links:read,links:write,stats:read")
    for method, path, body in ADMIN_ONLY:
        anonymous = await anon_client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["content-type"] == PROBLEM
        user = await bob.request(method, path, json=body)
        assert user.status_code == 403, (method, path)
    assert (await client.get("/api/v1/blocklist")).json()["total"] == 0
    assert (await client.get("/api/v1/blocklist")).status_code == 200


# -- the migration ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet."""
    if request.param == "postgresql":
        with request.getfixturevalue("postgres").database(migrated=False) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'old.db'}"


async def test_the_migration_fills_host_keys_of_existing_links(empty_url: str) -> None:
    await upgrade_async(empty_url, "0006")
    engine = make_engine(empty_url)
    urls = {"a1": "https://Sub.Example.com./x", "a2": "http://[2001:db8::1]:8080/",
            "a3": "http://192.0.2.1/", "a4": "https://xn--bcher-kva.example/"}
    try:
        async with engine.begin() as conn:
            for code, url in urls.items():
                await conn.execute(text(
                    "INSERT INTO links (code, url, url_digest, created_at, updated_at) "
                    "VALUES (:code, :url, 'd', :now, :now)"),
                    {"code": code, "url": url, "now": datetime.now(UTC)})
        await upgrade_async(empty_url)
        async with engine.connect() as conn:
            keys = dict((await conn.execute(text("SELECT code, host_key FROM links"))).all())
    finally:
        await engine.dispose()
    assert keys == {"a1": "com.example.sub", "a2": "2001:db8::1", "a3": "192.0.2.1",
                    "a4": "example.xn--bcher-kva"}
    assert keys == {code: host_key(host_of(url)) for code, url in urls.items()}
