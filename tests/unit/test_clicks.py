"""What a click records: user-agent classes, bots and why, referrers, the address per privacy mode."""

from __future__ import annotations

import dataclasses
import marshal

import pytest

from snip.domain.clicks import (
    Click,
    bot_reason,
    classify_agent,
    new_click_id,
    split_referrer,
    tracked_ip,
)
from snip.entrypoints.clients import ClientAddresses, parse_networks
from snip.service_layer.clicks import ClickEnricher, capture, restore

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
SAFARI_IPAD = ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
               "Gecko) Version/16.6 Mobile/15E148 Safari/604.1")
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.0.0 Mobile Safari/537.36")

BOTS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Python-urllib/3.11",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
]


@pytest.mark.parametrize(("ua", "browser", "os", "device"), [
    (FIREFOX_LINUX, "Firefox", "Linux", "desktop"),
    (CHROME_WINDOWS, "Chrome", "Windows", "desktop"),
    (SAFARI_IPHONE, "Mobile Safari", "iOS", "mobile"),
    (SAFARI_IPAD, "Mobile Safari", "iOS", "tablet"),
    (CHROME_ANDROID, "Chrome Mobile", "Android", "mobile"),
])
def test_browsers_are_classified(ua: str, browser: str, os: str, device: str) -> None:
    agent = classify_agent(ua)
    assert (agent.browser, agent.os, agent.device, agent.bot) == (browser, os, device, False)
    assert bot_reason("GET", None, agent) is None


@pytest.mark.parametrize("ua", BOTS)
def test_crawlers_previews_and_scripts_are_bots(ua: str) -> None:
    agent = classify_agent(ua)
    assert agent.bot and agent.device == "bot", ua
    assert bot_reason("GET", None, agent) == "user-agent"


def test_no_user_agent_is_a_bot() -> None:
    assert classify_agent(None).bot and classify_agent("").bot


def test_head_and_prefetch_are_never_human() -> None:
    person = classify_agent(CHROME_WINDOWS)
    assert bot_reason("HEAD", None, person) == "head"
    assert bot_reason("GET", "prefetch", person) == "prefetch"
    assert bot_reason("GET", "prefetch;prerender", person) == "prefetch"
    assert bot_reason("GET", "Prefetch", person) == "prefetch"


def test_referrer_host_and_crop() -> None:
    assert split_referrer("https://News.Example.com/a?b=c") == (
        "news.example.com", "https://News.Example.com/a?b=c")
    host, cropped = split_referrer("https://x.example/" + "a" * 1000)
    assert host == "x.example" and cropped is not None and len(cropped) == 500
    assert split_referrer(None) == (None, None)
    assert split_referrer("not a url")[0] is None
    assert split_referrer("http://[::1")[0] is None  # unparseable: no host, no crash


@pytest.mark.parametrize(("address", "mode", "kept"), [
    ("203.0.113.77", "anonymized", "203.0.113.0"),
    ("2001:db8:1234:5678::1", "anonymized", "2001:db8:1234::"),
    ("::ffff:203.0.113.77", "anonymized", "203.0.113.0"),
    ("203.0.113.77", "full", "203.0.113.77"),
    ("2001:db8:1234:5678::1", "full", "2001:db8:1234:5678::1"),
    ("203.0.113.77", "off", None),
    (None, "full", None),
])
def test_ip_tracking_modes(address: str | None, mode: str, kept: str | None) -> None:
    assert tracked_ip(address, mode) == kept  # type: ignore[arg-type]


def test_click_ids_are_uuid7_and_ordered_by_time() -> None:
    ids = [new_click_id() for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(i[14] == "7" for i in ids)  # the version nibble
    assert ids == sorted(ids)


def scope(method: str = "GET", *headers: tuple[bytes, bytes],
          client: str = "198.51.100.20") -> dict[str, object]:
    return {"method": method, "client": (client, 40000), "headers": list(headers)}


def test_enricher_reads_the_request_in_the_writer() -> None:
    enrich = ClickEnricher(ip_tracking="anonymized", country_of=lambda ip: "DE"
                           if ip == "198.51.100.20" else None)
    click = enrich(("abc", 1700000000.5, scope(
        "GET", (b"user-agent", SAFARI_IPHONE.encode()),
        (b"referer", b"https://t.co/xyz")), True))
    assert (click.code, click.at, click.counted) == ("abc", 1700000000.5, True)
    assert (click.browser, click.os, click.device) == ("Mobile Safari", "iOS", "mobile")
    assert (click.is_bot, click.bot_reason) == (False, None)
    assert (click.referrer_host, click.referrer) == ("t.co", "https://t.co/xyz")
    assert click.ip == "198.51.100.0"
    assert click.country == "DE"  # looked up on the full address, before anonymising


def test_enricher_marks_head_and_prefetch_and_does_not_count_them() -> None:
    enrich = ClickEnricher()
    head = enrich(("abc", 1.0, scope("HEAD", (b"user-agent", FIREFOX_LINUX.encode())), True))
    assert (head.is_bot, head.bot_reason, head.counted) == (True, "head", False)
    prefetch = enrich(("abc", 1.0, scope("GET", (b"user-agent", FIREFOX_LINUX.encode()),
                                         (b"sec-purpose", b"prefetch")), True))
    assert (prefetch.is_bot, prefetch.bot_reason) == (True, "prefetch")
    legacy = enrich(("abc", 1.0, scope("GET", (b"user-agent", FIREFOX_LINUX.encode()),
                                       (b"purpose", b"prefetch")), True))
    assert legacy.bot_reason == "prefetch"
    bot = enrich(("abc", 1.0, scope("GET", (b"user-agent", b"Slackbot 1.0")), True))
    assert (bot.is_bot, bot.bot_reason, bot.device) == (True, "user-agent", "bot")


def test_enricher_without_tracking_keeps_no_address() -> None:
    click = ClickEnricher(ip_tracking="off")(("abc", 1.0, scope(), True))
    assert click.ip is None


def test_a_failing_geoip_lookup_does_not_lose_the_click() -> None:
    def broken(_ip: str) -> str | None:
        raise RuntimeError("corrupt database")

    click = ClickEnricher(country_of=broken)(("abc", 1.0, scope(), True))
    assert click.code == "abc" and click.country is None


def test_a_capture_classifies_in_another_process_as_the_request_itself() -> None:
    """The click-writer process gets `capture()`'s plain values over a socket (marshal); what it
    classifies must be what classifying the request here would have given."""
    headers = ((b"host", b"s.example"), (b"user-agent", FIREFOX_LINUX.encode()),
               (b"referer", b"https://news.example.com/a?b=1"), (b"cookie", b"session=secret"),
               (b"authorization", b"Bearer snip_secret"), (b"x-forwarded-for", b"198.51.100.7"),
               (b"sec-purpose", b"prefetch"))
    raw = ("abc", 1.5, {**scope("GET", *headers), "client": ("203.0.113.9", 5555)}, True)
    captured = marshal.loads(marshal.dumps(capture(raw)))
    assert b"secret" not in marshal.dumps(captured)  # cookies and keys never leave the worker
    proxies = ClientAddresses(parse_networks(["203.0.113.0/24"])).of
    enrich = ClickEnricher(ip_tracking="full", client_of=proxies)
    here, there = enrich(raw), enrich(restore(captured))
    assert there.id != here.id
    assert dataclasses.replace(there, id=here.id) == here
    assert (there.ip, there.bot_reason, there.referrer_host) == (
        "198.51.100.7", "prefetch", "news.example.com")
    # The writer's own way, without a scope: the same click, with proxies and without.
    for enricher in (enrich, ClickEnricher(), ClickEnricher(ip_tracking="off")):
        direct, restored = enricher.captured(captured), enricher(restore(captured))
        assert dataclasses.replace(direct, id=restored.id) == restored
    assert ClickEnricher().captured(captured).ip == "203.0.113.0"  # the socket peer, /24


def test_requests_from_one_browser_send_its_headers_once_a_frame() -> None:
    """A worker holds its captures until a batch leaves, then sends them as one frame: equal
    headers are kept once, so the frame carries a user agent once, not once per click, and the
    requests' own header objects are not held."""
    from snip.adapters.click_writer import frame
    from snip.service_layer import clicks

    def request(i: int) -> dict[str, object]:  # new objects per request, as a server makes
        return {**scope("GET", (b"host", b"s.example"),
                        (b"user-agent", bytes(bytearray(CHROME_WINDOWS.encode()))),
                        (b"referer", bytes(bytearray(b"https://news.example.com/a"))),
                        (b"accept", b"*/*")), "client": ("203.0.113.9", 5000 + i)}

    captured = [capture(("abc", float(i), request(i), True)) for i in range(500)]
    assert all(c[4] == [(b"user-agent", CHROME_WINDOWS.encode()),
                        (b"referer", b"https://news.example.com/a")] for c in captured)
    assert all(c[4][0] is captured[0][4][0] for c in captured)  # the first request's pair
    sent = frame(captured)
    assert sent.count(CHROME_WINDOWS.encode()) == 1
    assert len(sent) < 100 * len(captured)  # about 45 bytes a click; 220 with each header sent
    assert [ClickEnricher().captured(c).browser for c in marshal.loads(sent[4:])] == [
        "Chrome"] * 500
    # Headers that differ per client (a proxy's X-Forwarded-For) do not grow the table for ever.
    for i in range(clicks.CACHE_MAX + 10):
        capture(("abc", 1.0, scope("GET", (b"x-forwarded-for", f"198.51.{i // 256}.{i % 256}"
                                           .encode())), True))
    assert len(clicks._SEEN_HEADERS) <= clicks.CACHE_MAX


def test_wire_form_round_trips() -> None:
    click = ClickEnricher(ip_tracking="full")(("abc", 2.5, scope(
        "GET", (b"user-agent", CHROME_WINDOWS.encode())), False))
    assert Click.from_wire(click.to_wire()) == click


@pytest.mark.parametrize("at", [
    1763700000.0, 1763700000.123456, 1763700000.9999995, 1763700000.99999949, 1763700000.0000005,
    0.0, 4102444799.999999, *(1763700000 + i / 7 for i in range(50)),
])
def test_click_times_are_stored_as_sqlalchemy_stores_them(at: float) -> None:
    """The SQLite click writer formats times itself (3x cheaper): stats read them back through
    SQLAlchemy's DATETIME, so the text must be exactly what SQLAlchemy would have written."""
    from datetime import UTC, datetime

    from sqlalchemy.dialects import sqlite

    from snip.adapters.sql.clicks import _sqlite_time
    from snip.adapters.sql.schema import clicks

    dialect = sqlite.dialect()
    bind = clicks.c.ts.type.dialect_impl(dialect).bind_processor(dialect)
    assert _sqlite_time(at) == bind(datetime.fromtimestamp(at, UTC))
