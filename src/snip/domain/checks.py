"""URL checks: what a checker answers, and the domain blocklist's matching rules. Plain Python.

Matching rules (docs/design.md, "Abuse"):

* A blocklist entry is a domain name (or an IP address). It is normalised the way link URLs
  are: lower case, IDNA (punycode) for Unicode names, no trailing dot. `*.example.com` and
  `.example.com` are read as `example.com`; a pasted URL is reduced to its host.
* An entry blocks its own host and every subdomain: `example.com` blocks `example.com` and
  `a.b.example.com`, never `notexample.com` or `example.com.evil.net`. A one-label entry such
  as `zip` blocks a whole top-level domain.
* An IP address entry blocks only that address.
* Storage finds a domain's links with one index range over `host_key`: the host with its
  labels reversed (`com.example.www`), so a domain and its subdomains sort together.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from snip.domain.errors import InvalidLink, InvalidURL
from snip.domain.urls import normalise_url

MAX_DOMAIN_LENGTH = 253

# A bad blocklist entry is a bad field like any other: 422 invalid-link.
InvalidDomain = InvalidLink


class CheckVerdict(enum.Enum):
    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A URL checker's answer. `reason` says why a URL is blocked, for a person to read."""

    verdict: CheckVerdict
    checker: str = ""
    reason: str = ""

    @classmethod
    def allow(cls, checker: str = "") -> CheckResult:
        return cls(CheckVerdict.ALLOW, checker)

    @classmethod
    def block(cls, checker: str, reason: str) -> CheckResult:
        return cls(CheckVerdict.BLOCK, checker, reason)

    @property
    def blocked(self) -> bool:
        return self.verdict is CheckVerdict.BLOCK


ALLOWED = CheckResult.allow()


def _is_ip(host: str) -> bool:
    if ":" not in host and not host.rpartition(".")[2].isdigit():
        return False  # the common case, without an exception: a name's last label has a letter
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_of(url: str) -> str:
    """The host of a normalised link URL as compared: lower case, punycode, no trailing dot.

    IPv6 addresses come without brackets. Only normalised URLs (as stored) are expected.
    """
    return (urlsplit(url).hostname or "").rstrip(".")


def host_key(host: str) -> str:
    """The stored, indexed form of a host: labels reversed (`www.example.com` → `com.example.www`).

    IP addresses are kept as they are, since only exact matches apply to them.
    """
    if _is_ip(host):
        return host
    return ".".join(reversed(host.split(".")))


def key_range(domain: str) -> tuple[str, str, str]:
    """(exact key, low, high): the domain's key, and the half-open range of its subdomains' keys.

    Every subdomain key starts with `key + "."`; "/" is the character after "." so
    `key + "/"` bounds the range (compare by code point: the C collation on PostgreSQL).
    """
    key = host_key(domain)
    if _is_ip(domain):
        return key, key, key  # an address has no subdomains: an empty range
    return key, key + ".", key + "/"


def normalise_domain(raw: str) -> str:
    """The canonical form of one blocklist entry, or `InvalidDomain` saying why it is not one."""
    if not isinstance(raw, str):
        raise InvalidDomain(f"a domain must be text, not {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise InvalidDomain("the domain is empty")
    # A pasted URL: keep its host.
    text = urlsplit(text).netloc.rpartition("@")[2] if "://" in text else text.split("/", 1)[0]
    if text.startswith("*."):
        text = text[2:]
    elif text.startswith(".") and not text.startswith(".."):
        text = text[1:]
    if not text:
        raise InvalidDomain(f"{raw.strip()[:80]!r} holds no domain name")
    if len(text) > MAX_DOMAIN_LENGTH + 2:
        raise InvalidDomain(f"{text[:60]}... is longer than {MAX_DOMAIN_LENGTH} characters")
    # The very rules link URLs go through, so an entry and a link's host compare alike.
    try:
        host = host_of(normalise_url(f"http://{text}/"))
    except InvalidURL as exc:
        raise InvalidDomain(f"{raw.strip()[:80]!r} is not a domain name: {exc.detail}") from None
    return host


def parse_domains(lines: Iterable[str], *, source: str = "") -> list[str]:
    """Blocklist text: one domain per line; `#` starts a comment; blank lines are skipped.

    Raises `InvalidDomain` naming the line (and `source`, a file name) of the first bad entry.
    Duplicates are kept once, in their first position.
    """
    seen: dict[str, None] = {}
    where = f"{source}:" if source else "line "
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            seen[normalise_domain(entry)] = None
        except InvalidDomain as exc:
            raise InvalidDomain(f"{where}{number}: {exc.detail}") from None
    return list(seen)


def split_setting(value: str) -> list[str]:
    """SNIP_BLOCKLIST: comma-separated domains, normalised (entry N is "line" N in errors)."""
    return parse_domains(value.split(","), source="SNIP_BLOCKLIST")


def suffixes(host: str) -> Iterator[str]:
    """`a.b.example.com` → itself, `b.example.com`, `example.com`, `com` (an IP: itself only)."""
    yield host
    if _is_ip(host):
        return
    start = host.find(".")
    while start >= 0:
        host = host[start + 1 :]
        yield host
        start = host.find(".")


def candidates(host: str) -> list[str]:
    """The entries that would block `host`, most specific first (an address: itself only)."""
    return list(suffixes(host))


def covers(domain: str, host: str) -> bool:
    """Does the blocklist entry `domain` block `host` (itself or a subdomain)?"""
    return host == domain or (host.endswith("." + domain) and not _is_ip(host))


@dataclass(frozen=True, slots=True)
class Blocklist:
    """A set of blocked domains; `match(host)` names the entry that blocks it, if any."""

    domains: frozenset[str] = frozenset()

    def match(self, host: str) -> str | None:
        if not self.domains:
            return None
        for candidate in suffixes(host):
            # An address entry blocks that address only, never as a "parent" of a name.
            if candidate in self.domains and (candidate == host or not _is_ip(candidate)):
                return candidate
        return None

    def match_url(self, url: str) -> str | None:
        return self.match(host_of(url))

    def __len__(self) -> int:
        return len(self.domains)


BLOCKED_BY_BLOCKLIST = "blocklist"  # links.blocked_by for links the domain blocklist blocked
