"""URL checkers loaded by SNIP_URL_CHECKERS in tests (`tests.abuse_checker:FACTORY`).

Real objects behind the real plug-in interface: what a Safe-Browsing-style service looks like
to snip, without a network service.
"""

from __future__ import annotations

import asyncio
from typing import Any

from snip.domain.checks import CheckResult


class WordChecker:
    """Blocks URLs whose path holds a word; counts the URLs it was asked about."""

    name = "words"

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[str] = []

    async def check(self, url: str) -> CheckResult:
        self.seen.append(url)
        await asyncio.sleep(0)  # a real checker awaits its service
        if self.word in url:
            return CheckResult.block(self.name, f"the URL mentions {self.word!r} (malware)")
        return CheckResult.allow(self.name)


class Broken:
    """A checker whose service is down: raises on every call."""

    name = "broken"

    def __init__(self, fail_open: bool) -> None:
        self.fail_open = fail_open

    async def check(self, url: str) -> CheckResult:
        raise ConnectionError("the checking service refused the connection")


class Slow:
    """A checker whose service hangs: answers after a minute (its timeout is 0.2 s)."""

    name = "slow"
    timeout = 0.2

    def __init__(self, fail_open: bool) -> None:
        self.fail_open = fail_open

    async def check(self, url: str) -> CheckResult:
        await asyncio.sleep(60)
        return CheckResult.allow(self.name)


def words(settings: Any) -> WordChecker:
    return WordChecker("evil-payload")


def broken_open(settings: Any) -> Broken:
    return Broken(fail_open=True)


def broken_closed(settings: Any) -> Broken:
    return Broken(fail_open=False)


def slow_open(settings: Any) -> Slow:
    return Slow(fail_open=True)


def slow_closed(settings: Any) -> Slow:
    return Slow(fail_open=False)


def not_a_checker(settings: Any) -> object:
    return object()
