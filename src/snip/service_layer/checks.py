"""URL checkers: the small interface, the blocklist as the first one, and the chain that runs them.

A checker is any object with a `name` and `async check(url) -> CheckResult`; the URL it gets
is already normalised. Optional attributes tune how the chain treats it:

* `timeout` (seconds, default SNIP_URL_CHECK_TIMEOUT): a check that takes longer counts as
  an error;
* `fail_open` (default True): on an error or a timeout, True lets the URL through (logged,
  counted), False refuses the request with 503 "try again" (never 422: the URL was not judged).

More checkers are loaded by configuration, `SNIP_URL_CHECKERS=package.module:factory,...`;
each factory is called with the `Settings` and returns a checker. The chain runs the blocklist
first, then each configured checker in order; the first that blocks decides.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from snip.domain.checks import (
    ALLOWED,
    Blocklist,
    CheckResult,
    candidates,
    host_of,
    parse_domains,
    split_setting,
)
from snip.domain.errors import BlockedURL, InvalidLink, StorageUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


@runtime_checkable
class UrlChecker(Protocol):
    """Judges a normalised destination URL. May do I/O; must not keep state per request."""

    name: str

    async def check(self, url: str) -> CheckResult: ...


class BlocklistChecker:
    """Checker #1: the domain blocklist.

    With `lookup` (wired by the abuse service) each check asks the database, one primary-key
    lookup of the host's suffixes, so every process and host refuses a domain the moment it
    is listed. `blocklist` is this process's in-memory copy (reloaded when the stored list
    changes, within SNIP_BLOCKLIST_REFRESH seconds): `check_now` uses it, for loops over many
    URLs (an import) where a query per URL would cost too much. Fail-closed: if the database
    cannot answer, a link could not be stored anyway.
    """

    name = "blocklist"
    fail_open = False
    timeout = 30.0  # the database's own statement and pool timeouts apply first

    def __init__(self, blocklist: Blocklist | None = None,
                 lookup: Callable[[list[str]], Awaitable[str | None]] | None = None) -> None:
        self.blocklist = blocklist or Blocklist()
        self.lookup = lookup

    async def check(self, url: str) -> CheckResult:
        if self.lookup is None:
            return self.check_now(url)
        return self._result(await self.lookup(candidates(host_of(url))))

    def check_now(self, url: str) -> CheckResult:
        """Against the in-memory copy, synchronously (about 10 µs): for callers checking many URLs."""
        return self._result(self.blocklist.match(host_of(url)))

    def _result(self, domain: str | None) -> CheckResult:
        if domain is None:
            return ALLOWED
        return CheckResult.block(self.name, f"the domain {domain} is on this service's blocklist")


class CheckerChain:
    """Runs checkers in order with a timeout each; the first block wins."""

    def __init__(self, checkers: Sequence[UrlChecker], *,
                 default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.checkers = list(checkers)
        self._default_timeout = default_timeout
        self.errors: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checkers]

    async def check(self, url: str) -> CheckResult:
        """The verdict on `url`. Raises `StorageUnavailable` when a fail-closed checker fails."""
        for checker in self.checkers:
            result = await self._one(checker, url)
            if result.blocked:
                return result
        return ALLOWED

    async def enforce(self, url: str) -> None:
        """Raise `BlockedURL` (422) if any checker blocks `url`; what LinkService calls."""
        result = await self.check(url)
        if result.blocked:
            raise BlockedURL(f"this destination is not allowed: {result.reason}")

    async def _one(self, checker: UrlChecker, url: str) -> CheckResult:
        timeout = float(getattr(checker, "timeout", self._default_timeout))
        fail_open = bool(getattr(checker, "fail_open", True))
        try:
            result = await asyncio.wait_for(checker.check(url), timeout)
        except Exception as exc:  # the checker's service is down, slow or answered nonsense
            self.errors[checker.name] = self.errors.get(checker.name, 0) + 1
            what = "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc!r})"
            if fail_open:
                log.warning("URL checker %s %s; letting the URL through (fail-open)",
                            checker.name, what)
                return ALLOWED
            log.warning("URL checker %s %s; refusing for now (fail-closed)", checker.name, what)
            raise StorageUnavailable(
                f"the URL checker '{checker.name}' cannot judge this URL right now; "
                "try again shortly") from None
        if not isinstance(result, CheckResult):
            self.errors[checker.name] = self.errors.get(checker.name, 0) + 1
            log.error("URL checker %s returned %r, not a CheckResult", checker.name, result)
            if fail_open:
                return ALLOWED
            raise StorageUnavailable(f"the URL checker '{checker.name}' is misbehaving")
        if result.blocked and not result.checker:
            result = CheckResult.block(checker.name, result.reason)
        return result


def load_checkers(specs: Sequence[str], settings: Any) -> list[UrlChecker]:
    """Build the checkers named `package.module:factory`; each factory gets the settings.

    Raises ValueError with a clear message for a spec that cannot be loaded, so a typo in
    SNIP_URL_CHECKERS stops snip at start instead of silently checking nothing.
    """
    found: list[UrlChecker] = []
    for spec in specs:
        module_name, _, attribute = spec.strip().partition(":")
        if not module_name or not attribute:
            raise ValueError(f"SNIP_URL_CHECKERS: {spec!r} is not 'package.module:factory'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"SNIP_URL_CHECKERS: cannot import {module_name} ({exc})") from exc
        factory = getattr(module, attribute, None)
        if not callable(factory):
            raise ValueError(f"SNIP_URL_CHECKERS: {module_name} has no callable {attribute}")
        checker = factory(settings)
        if not isinstance(checker, UrlChecker):
            raise ValueError(f"SNIP_URL_CHECKERS: {spec} did not return a checker (an object "
                             "with `name` and `async check(url)`)")
        found.append(checker)
    return found


@dataclass(frozen=True, slots=True)
class ConfiguredChecks:
    """What bootstrap wires: the chain for LinkService, the blocklist checker the abuse service
    keeps current, and the domains the settings name (by source: setting, file)."""

    chain: CheckerChain
    blocklist: BlocklistChecker
    configured: dict[str, list[str]]


def configure(settings: Any) -> ConfiguredChecks:
    """Read SNIP_BLOCKLIST, SNIP_BLOCKLIST_FILE and SNIP_URL_CHECKERS (ValueError if unusable)."""
    try:
        configured = {"setting": split_setting(settings.blocklist or "")}
    except InvalidLink as exc:
        raise ValueError(exc.detail) from exc
    if settings.blocklist_file:
        path = Path(settings.blocklist_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"SNIP_BLOCKLIST_FILE: cannot read {path} ({exc.strerror})") from exc
        try:
            configured["file"] = parse_domains(text.splitlines(), source=str(path))
        except InvalidLink as exc:
            raise ValueError(f"SNIP_BLOCKLIST_FILE: {exc.detail}") from exc
    blocklist = BlocklistChecker()
    specs = [s for s in (settings.url_checkers or "").split(",") if s.strip()]
    chain = CheckerChain([blocklist, *load_checkers(specs, settings)],
                         default_timeout=settings.url_check_timeout)
    return ConfiguredChecks(chain, blocklist, configured)
