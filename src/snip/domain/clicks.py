"""What a click records: who (roughly), from where, with what, and whether it was a person.

Plain functions on plain values; the click pipeline (`snip.service_layer.clicks`) calls them off
the request path, in its writer. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import uuid_utils
from ua_parser import parse as parse_ua

from snip.domain.privacy import anonymize_ip

IpTracking = Literal["off", "anonymized", "full"]
BotReason = Literal["user-agent", "head", "prefetch"]

UA_MAX = 500  # the clicks table's column sizes
REFERRER_MAX = 500
HOST_MAX = 255
FAMILY_MAX = 64

# Crawlers, link previews (chat apps and social networks fetch a link to show a card) and HTTP
# libraries. ua-parser knows many crawlers too (device family "Spider"); this list catches the
# previewers and scripts it does not.
_BOT_UA = re.compile(
    r"\bbot\b|bot/|bot;|bot\)|robot|crawl|spider|slurp|facebookexternalhit|facebookcatalog|"
    r"meta-externalagent|slack|twitterbot|discordbot|telegrambot|whatsapp/|linkedinbot|"
    r"skypeuripreview|embedly|pinterestbot|"
    r"redditbot|applebot|bingpreview|googlebot|google-inspectiontool|yandex|baiduspider|"
    r"duckduckbot|mastodon|vkshare|iframely|preview|headless|phantomjs|lighthouse|"
    r"^curl/|^wget/|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|"
    r"^java/|okhttp|libwww-perl|^ruby|^php|axios/|node-fetch|undici|httpie|postman|insomnia|"
    r"scrapy|ahrefs|semrush|mj12|dotbot|petalbot|bytespider|gptbot|claudebot|ccbot|"
    r"archive\.org|ia_archiver|uptime|monitor|pingdom|statuscake",
    re.IGNORECASE,
)
_DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora",
                         "FreeBSD", "OpenBSD", "Debian", "macOS"})


@dataclass(frozen=True, slots=True)
class Agent:
    """A user agent string, classified."""

    browser: str | None
    os: str | None
    device: str  # desktop, mobile, tablet, bot, other
    bot: bool


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x (setattr per field)
class Click:
    """One recorded redirect. `id` is a UUIDv7 made when the click was captured: writing the
    same click twice (a retried batch, a redelivered stream entry) stores it once.

    `counted`: the click adds one to the link's visit counters. False for HEAD requests and
    for links with a visit limit (their visit was taken atomically when it was served).
    """

    id: str
    code: str
    at: float  # seconds since the epoch, UTC
    referrer_host: str | None
    referrer: str | None
    user_agent: str | None
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool
    bot_reason: str | None
    ip: str | None
    country: str | None
    counted: bool

    def to_wire(self) -> list[Any]:
        """A compact, JSON-ready form (the Redis stream entry)."""
        return [self.id, self.code, self.at, self.referrer_host, self.referrer, self.user_agent,
                self.browser, self.os, self.device, self.is_bot, self.bot_reason, self.ip,
                self.country, self.counted]

    @classmethod
    def from_wire(cls, fields: list[Any]) -> Click:
        (id_, code, at, ref_host, ref, ua, browser, os_, device, is_bot, reason, ip, country,
         counted) = fields
        return cls(id=str(id_), code=str(code), at=float(at), referrer_host=ref_host,
                   referrer=ref, user_agent=ua, browser=browser, os=os_, device=device,
                   is_bot=bool(is_bot), bot_reason=reason, ip=ip, country=country,
                   counted=bool(counted))


def new_click_id() -> str:
    """A UUIDv7: unique, and sorted by time (inserts land at the end of the primary key)."""
    return str(uuid_utils.uuid7())


_AGENTS: dict[str, Agent] = {}
_AGENTS_MAX = 10_000


def classify_agent(user_agent: str | None) -> Agent:
    """Browser, OS and device type of a user agent, and whether it is a bot (cached by string)."""
    if not user_agent:
        return Agent(None, None, "bot", True)  # browsers always send one; scripts may not
    found = _AGENTS.get(user_agent)
    if found is None:
        found = _classify(user_agent)
        if len(_AGENTS) >= _AGENTS_MAX:
            _AGENTS.clear()  # crude but bounded; the common agents come straight back
        _AGENTS[user_agent] = found
    return found


def _classify(user_agent: str) -> Agent:
    result = parse_ua(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    os_family = result.os.family if result.os else None
    device_family = result.device.family if result.device else None
    bot = device_family == "Spider" or _BOT_UA.search(user_agent) is not None
    browser = None if browser in (None, "Other") else browser[:FAMILY_MAX]
    os_name = None if os_family in (None, "Other") else os_family[:FAMILY_MAX]
    if bot:
        device = "bot"
    elif "ipad" in user_agent.lower() or "tablet" in user_agent.lower() or (
        os_name == "Android" and "mobile" not in user_agent.lower()
    ):
        device = "tablet"
    elif "mobi" in user_agent.lower() or os_name in ("iOS", "Android"):
        device = "mobile"
    elif os_name in _DESKTOP_OS:
        device = "desktop"
    else:
        device = "other"
    return Agent(browser, os_name, device, bot)


def bot_reason(method: str, purpose: str | None, agent: Agent) -> BotReason | None:
    """Why a request is not a person following a link, or None when it is one.

    HEAD only looks; a prefetch (`Purpose`/`Sec-Purpose: prefetch`) is the browser guessing;
    a crawler, link-preview or script user agent is not a person.
    """
    if method == "HEAD":
        return "head"
    if purpose is not None and "prefetch" in purpose.lower():
        return "prefetch"
    if agent.bot:
        return "user-agent"
    return None


_REFERRERS: dict[str, tuple[str | None, str | None]] = {}


def split_referrer(referrer: str | None) -> tuple[str | None, str | None]:
    """(host, referrer cropped to fit): `https://news.example/a?b` → (`news.example`, …)."""
    if not referrer:
        return None, None
    found = _REFERRERS.get(referrer)
    if found is None:
        found = _split_referrer(referrer)
        if len(_REFERRERS) >= _AGENTS_MAX:
            _REFERRERS.clear()
        _REFERRERS[referrer] = found
    return found


def _split_referrer(referrer: str) -> tuple[str | None, str | None]:
    try:
        host = urlsplit(referrer).hostname
    except ValueError:
        host = None
    return (host[:HOST_MAX] if host else None), referrer[:REFERRER_MAX]


def tracked_ip(address: str | None, mode: IpTracking) -> str | None:
    """The client address as `SNIP_IP_TRACKING` allows it to be stored."""
    if address is None or mode == "off":
        return None
    if mode == "anonymized":
        return _anonymize_v4(address) or anonymize_ip(address)
    return address.removeprefix("::ffff:")[:45]  # an IPv4 client on a dual-stack socket


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}")


def _anonymize_v4(address: str) -> str | None:
    """The common case, dotted-quad IPv4, 10x cheaper than `ipaddress`; None for anything else."""
    match = _IPV4.fullmatch(address)
    return match.group(1) + ".0" if match else None


def crop_agent(user_agent: str | None) -> str | None:
    return user_agent[:UA_MAX] if user_agent else None
