"""The blocklist's matching rules and the checker chain, in plain Python."""

from __future__ import annotations

import asyncio

import pytest

from snip.domain.checks import (
    Blocklist,
    CheckResult,
    InvalidDomain,
    covers,
    host_key,
    host_of,
    key_range,
    normalise_domain,
    parse_domains,
    split_setting,
)
from snip.domain.errors import BlockedURL, StorageUnavailable
from snip.service_layer.checks import BlocklistChecker, CheckerChain


@pytest.mark.parametrize(("raw", "expected"), [
    ("example.com", "example.com"),
    ("  Example.COM.  ", "example.com"),
    ("*.example.com", "example.com"),
    (".example.com", "example.com"),
    ("https://user@Sub.Example.com:8443/path?q", "sub.example.com"),
    ("example.com/some/path", "example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("zip", "zip"),
    ("192.0.2.1", "192.0.2.1"),
    ("[2001:DB8::1]", "2001:db8::1"),
])
def test_entries_are_normalised_like_link_hosts(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "exa mple.com", "a..b", "http://", "*.", "exa!mple.com",
                                 "ex%41mple.com", "x" * 300, "0x7f.1"])
def test_bad_entries_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidDomain) as caught:
        normalise_domain(raw)
    assert caught.value.detail


def test_a_domain_covers_itself_and_its_subdomains_only() -> None:
    blocklist = Blocklist(frozenset({"example.com", "zip", "192.0.2.1"}))
    assert blocklist.match("example.com") == "example.com"
    assert blocklist.match("a.b.example.com") == "example.com"
    assert blocklist.match("anything.zip") == "zip"
    assert blocklist.match("192.0.2.1") == "192.0.2.1"
    for host in ("notexample.com", "example.com.evil.net", "example.co", "com", "example.org",
                 "zipper.net", "192.0.2.10", "10.192.0.2.1"):
        assert blocklist.match(host) is None, host
    assert Blocklist().match("example.com") is None
    assert covers("example.com", "www.example.com")
    assert not covers("example.com", "wwwexample.com")


def test_the_longest_listed_suffix_is_named_first() -> None:
    blocklist = Blocklist(frozenset({"example.com", "sub.example.com"}))
    assert blocklist.match("x.sub.example.com") == "sub.example.com"


def test_host_of_a_stored_url() -> None:
    assert host_of("https://www.example.com./a") == "www.example.com"
    assert host_of("http://[2001:db8::1]:8080/") == "2001:db8::1"
    assert host_of("http://192.0.2.1:81/") == "192.0.2.1"


def test_host_keys_put_a_domain_and_its_subdomains_in_one_range() -> None:
    key, low, high = key_range("example.com")
    assert key == "com.example"
    inside = [host_key(h) for h in ("a.example.com", "a.b.example.com", "z-9.example.com")]
    outside = [host_key(h) for h in ("notexample.com", "example.com.evil.net", "example.co",
                                     "examplf.com", "exampld.com", "example.community")]
    assert all(low <= k < high for k in inside)
    assert not any(low <= k < high or k == key for k in outside)
    assert host_key("192.0.2.1") == "192.0.2.1"


def test_a_list_file_has_comments_and_names_the_bad_line() -> None:
    text = ["# a feed", "", "Phish.example   # since May", "*.kit.example", "phish.example"]
    assert parse_domains(text) == ["phish.example", "kit.example"]
    with pytest.raises(InvalidDomain, match=r"feed\.txt:2"):
        parse_domains(["ok.example", "not valid"], source="feed.txt")
    assert split_setting(" a.example, B.example ,,") == ["a.example", "b.example"]
    assert split_setting("") == []


class Checker:
    def __init__(self, name: str, result: CheckResult | Exception | None = None, *,
                 delay: float = 0.0, fail_open: bool = True) -> None:
        self.name, self.result, self.delay, self.fail_open = name, result, delay, fail_open
        self.timeout = 0.1
        self.calls = 0

    async def check(self, url: str) -> CheckResult:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result or CheckResult.allow(self.name)


async def test_the_first_checker_that_blocks_decides() -> None:
    blocklist = BlocklistChecker(Blocklist(frozenset({"bad.example"})))
    later = Checker("later", CheckResult.block("", "malware"))
    chain = CheckerChain([blocklist, later])
    result = await chain.check("https://x.bad.example/")
    assert result.blocked and result.checker == "blocklist"
    assert later.calls == 0
    result = await chain.check("https://fine.example/")
    assert result.blocked and result.checker == "later" and result.reason == "malware"
    with pytest.raises(BlockedURL, match="malware"):
        await chain.enforce("https://fine.example/")


async def test_errors_and_timeouts_fail_open_or_closed_per_checker() -> None:
    for failing in (Checker("down", ConnectionError("refused")), Checker("slow", delay=5)):
        assert not (await CheckerChain([failing]).check("https://a.example/")).blocked
        failing.fail_open = False
        with pytest.raises(StorageUnavailable, match=failing.name):
            await CheckerChain([failing]).check("https://a.example/")
    chain = CheckerChain([Checker("odd", "yes")])  # type: ignore[arg-type]
    assert not (await chain.check("https://a.example/")).blocked
    assert chain.errors == {"odd": 1}
