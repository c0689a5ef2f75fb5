"""Abuse use cases: manage the domain blocklist (and block the links it covers), take reports.

The blocklist lives in the database (table blocked_domains). Creation checks a URL against it
with one primary-key lookup of the host's suffixes (`BlocklistChecker`), so every process and
host refuses a domain the moment it is listed. A change is applied at once by the process that
makes it: the list is stored, the links it covers are (un)blocked with one UPDATE per domain
over the indexed `host_key` range, and every cache tier forgets those codes (Redis tells the
other processes). Each process also keeps an in-memory copy (for bulk checks), reloaded when
the stored revision changes (polled every SNIP_BLOCKLIST_REFRESH s); on seeing new domains it
blocks their links again, at once and SWEEP_AGAIN_AFTER s later, so a link whose creation
raced with the change (checked just before, stored just after) is blocked too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from snip.domain import links as link_rules
from snip.domain.accounts import Actor
from snip.domain.checks import Blocklist, host_of, normalise_domain
from snip.domain.codes import looks_like_code
from snip.domain.errors import InvalidLink, LinkNotFound
from snip.domain.privacy import anonymize_ip
from snip.service_layer.checks import BlocklistChecker
from snip.service_layer.links import LinkService

log = logging.getLogger(__name__)

REASONS = ("phishing", "malware", "spam", "other")
ACTIONS = ("dismiss", "disable", "block-domain")
Source = Literal["setting", "file", "admin"]
MAX_COMMENT = 1000
CHUNK = 500  # domains per statement (SQLite's bound-parameter limit, and short transactions)
SWEEP_CHUNK = 100  # domains per blocking UPDATE (3 bound ranges each)
SWEEP_AGAIN_AFTER = 30.0  # seconds: catch links that a stale process was creating meanwhile


@dataclass(frozen=True, slots=True)
class BlockedDomain:
    domain: str
    source: str  # setting | file | admin
    reason: str | None
    added_by: str
    created_at: datetime
    links: int = 0  # links to it (or a subdomain) blocked now


@dataclass(frozen=True, slots=True)
class Report:
    id: int
    code: str
    reason: str
    comment: str | None
    reporter: str
    status: str  # open | resolved
    action: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    # The link as it is now (all None when it was deleted), and its open reports.
    url: str | None = None
    owner: str | None = None
    disabled: bool | None = None
    blocked: bool | None = None
    open_reports: int = 0


@dataclass(frozen=True, slots=True)
class BlocklistChange:
    domains: list[str]  # the domains actually added or removed (others were already so)
    links: list[str]  # codes of the links blocked or released


class AbuseRepository(Protocol):
    async def domains(self) -> tuple[int, frozenset[str]]: ...
    async def match(self, candidates: list[str]) -> str | None: ...
    async def revision(self) -> int: ...
    async def list_domains(self, *, with_counts: bool = True) -> list[BlockedDomain]: ...
    async def add_domains(self, domains: Sequence[str], *, source: str, added_by: str,
                          reason: str | None, now: datetime) -> list[str]: ...
    async def remove_domains(self, domains: Iterable[str], *, source: str | None = None
                             ) -> list[str]: ...
    async def domains_from(self, source: str) -> list[str]: ...
    async def backfill_hosts(self) -> int: ...
    async def block_links(self, domains: Sequence[str]) -> list[str]: ...
    async def unblock_links(self, domain: str) -> list[str]: ...
    async def link_exists(self, code: str) -> bool: ...
    async def add_report(self, *, code: str, reason: str, comment: str | None, reporter: str,
                         reporter_ip: str | None, now: datetime) -> int: ...
    async def list_reports(self, *, status: str | None, code: str | None, limit: int,
                           offset: int) -> tuple[list[Report], int]: ...
    async def get_report(self, report_id: int) -> Report | None: ...
    async def resolve_reports(self, code: str, *, action: str, by: str, now: datetime
                              ) -> list[int]: ...


Audit = Callable[[Actor, str, str, dict[str, Any]], Awaitable[None]]


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


class AbuseService:
    """The blocklist (stored, in memory, applied to links) and reports of abusive links."""

    def __init__(self, repo: AbuseRepository, links: LinkService, checker: BlocklistChecker, *,
                 configured: dict[str, list[str]] | None = None, refresh: float = 2.0,
                 audit: Audit | None = None,
                 clock: Callable[[], datetime] = link_rules.utcnow) -> None:
        self._audit = audit
        self._repo = repo
        self._links = links
        self.checker = checker
        checker.lookup = repo.match  # creation asks the database: exact across processes
        self._configured = configured or {}
        self._refresh = refresh
        self._clock = clock
        self._revision = -1
        self._backfilled = False
        self._task: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stored list and follow its changes (poll every `refresh` seconds)."""
        try:
            await self.reload()
        except Exception as exc:  # the database is down: creation can not work either
            log.warning("could not load the blocklist (%s); retrying in the background", exc)
        if self._task is None and self._refresh > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll(),
                                                                 name="blocklist-refresh")

    async def close(self) -> None:
        for task in [self._task, *self._later]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        self._later.clear()

    async def sync_configured(self) -> None:
        """Apply SNIP_BLOCKLIST and SNIP_BLOCKLIST_FILE to the stored list and to existing links.

        Run by servers at start, never by one-off CLI calls (a shell without the variables
        would otherwise unblock everything they list). Idempotent; several processes may run
        it at once.
        """
        for source in ("setting", "file"):
            wanted = self._configured.get(source, [])
            stale = set(await self._repo.domains_from(source)) - set(wanted)
            for chunk in _chunks(sorted(stale)):
                for domain in await self._repo.remove_domains(chunk, source=source):
                    await self._release(domain)
            for chunk in _chunks(wanted):
                await self._repo.add_domains(chunk, source=source, added_by="-", reason=None,
                                             now=self._clock())
            # Every configured domain is swept, not only the new ones: a process that died
            # between storing a domain and blocking its links left them unblocked.
            await self._sweep(wanted)
        await self.reload()

    async def reload(self) -> set[str]:
        """Read the stored list into this process's checker; the domains new to it."""
        revision, domains = await self._repo.domains()
        old = self.checker.blocklist.domains
        self.checker.blocklist = Blocklist(domains)
        first = self._revision < 0
        self._revision = revision
        return set() if first else set(domains - old)

    async def _poll(self) -> None:
        failing = False  # warn once per outage
        while True:
            await asyncio.sleep(self._refresh)
            try:
                if await self._repo.revision() != self._revision:
                    added = await self.reload()
                    if added:
                        log.info("blocklist changed elsewhere: %d new domains", len(added))
                        await self._sweep(sorted(added))
                        self._again(added)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down or slow: try again next time
                if not failing:
                    log.warning("could not refresh the blocklist (%r); trying again", exc)
                failing = True

    def _again(self, domains: set[str]) -> None:
        async def later() -> None:
            await asyncio.sleep(SWEEP_AGAIN_AFTER)
            try:
                await self._sweep(sorted(domains & self.checker.blocklist.domains))
            except Exception as exc:  # the next process start sweeps every configured domain
                log.warning("could not sweep the blocklist again (%r)", exc)

        task = asyncio.get_running_loop().create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _sweep(self, domains: Sequence[str]) -> list[str]:
        """Block the links of `domains` (in statements of SWEEP_CHUNK domains); their codes."""
        if not self._backfilled:  # rows an older writer stored without a host_key
            await self._repo.backfill_hosts()
            self._backfilled = True
        codes: list[str] = []
        for start in range(0, len(domains), SWEEP_CHUNK):
            found = await self._repo.block_links(domains[start:start + SWEEP_CHUNK])
            if found:
                await self._links.forget(found)
            codes += found
        if codes:
            log.info("blocked %d links to %d domains", len(codes), len(domains))
        return codes

    async def _release(self, domain: str) -> list[str]:
        codes = await self._repo.unblock_links(domain)
        if codes:
            log.info("released %d links to %s", len(codes), domain)
            await self._links.forget(codes)
        return codes

    # -- the blocklist -----------------------------------------------------------------------

    async def _record(self, actor: Actor, action: str, target: str, details: dict[str, Any]
                      ) -> None:
        if self._audit is not None and not actor.is_system:
            await self._audit(actor, action, target, details)

    async def block(self, domains: Iterable[str], *, actor: Actor, reason: str | None = None,
                    source: Source = "admin") -> BlocklistChange:
        """Add domains (normalised; `InvalidLink` for a bad one) and block their links now."""
        wanted = list(dict.fromkeys(normalise_domain(d) for d in domains))
        if reason is not None:
            reason = link_rules.validate_title(reason)  # one line of text, bounded
        added: list[str] = []
        for chunk in _chunks(wanted):
            added += await self._repo.add_domains(chunk, source=source, added_by=actor.name,
                                                  reason=reason, now=self._clock())
        await self.reload()
        codes = await self._sweep(added)
        if added:
            self._again(set(added))
            await self._record(actor, "blocklist.add", ",".join(added)[:200],
                               {"domains": added, "links": len(codes), "reason": reason})
        return BlocklistChange(added, codes)

    async def unblock(self, domains: Iterable[str], *, actor: Actor) -> BlocklistChange:
        """Remove domains from the list and release the links only they blocked."""
        wanted = list(dict.fromkeys(normalise_domain(d) for d in domains))
        removed: list[str] = []
        for chunk in _chunks(wanted):
            removed += await self._repo.remove_domains(chunk)
        await self.reload()
        codes: list[str] = []
        for domain in removed:
            codes += await self._release(domain)
        if removed:
            await self._record(actor, "blocklist.remove", ",".join(removed)[:200],
                               {"domains": removed, "links": len(codes)})
        return BlocklistChange(removed, codes)

    async def blocked_domains(self) -> list[BlockedDomain]:
        return await self._repo.list_domains()

    # -- reports -----------------------------------------------------------------------------

    def code_of(self, code_or_url: str) -> str:
        """The code in `abc123`, `https://s.example.com/abc123`, `/r/abc123` or `.../abc123+`."""
        text = code_or_url.strip()
        if "/" in text:
            parts = urlsplit(text if "://" in text else "http://-" + text)
            base = urlsplit(self._links.base_url)
            if "://" in text and (parts.hostname or "") != (base.hostname or ""):
                raise InvalidLink("this is not a short link of this service")
            path = parts.path
            prefix = base.path.rstrip("/")
            if prefix and path.startswith(prefix + "/"):
                path = path[len(prefix):]
            text = path.removeprefix("/r/").lstrip("/")
        text = text.removesuffix("+")
        if not looks_like_code(text):
            raise InvalidLink("give a short code or a short link of this service")
        return text

    async def report(self, code_or_url: str, *, reason: str, comment: str | None,
                     reporter: str, address: str | None) -> int | None:
        """Record a report of an abusive link; its id. Unknown codes are accepted and dropped
        (None), so a report never tells whether a code exists (the API answers alike)."""
        code = self.code_of(code_or_url)
        if reason not in REASONS:
            raise InvalidLink(f"reason must be one of {', '.join(REASONS)}")
        if comment is not None:
            comment = comment.strip()[:MAX_COMMENT] or None
            if comment and any(ord(c) < 32 and c not in "\n\t" for c in comment):
                raise InvalidLink("comment must not contain control characters")
        if not await self._repo.link_exists(code):
            log.info("report for an unknown code dropped")
            return None
        return await self._repo.add_report(code=code, reason=reason, comment=comment,
                                    reporter=reporter,
                                    reporter_ip=anonymize_ip(address) if address else None,
                                    now=self._clock())

    async def reports(self, *, status: str | None = "open", code: str | None = None,
                      limit: int = 50, offset: int = 0) -> tuple[list[Report], int]:
        if status is not None and status not in ("open", "resolved"):
            raise InvalidLink("status must be open or resolved")
        return await self._repo.list_reports(status=status, code=code, limit=limit,
                                             offset=offset)

    async def resolve(self, report_id: int, action: str, *, actor: Actor,
                      domain: str | None = None) -> tuple[Report, list[int]]:
        """Act on a report: dismiss it, disable its link (410), or block the link's domain
        (its host, or `domain`). Every open report of the same link is resolved with it."""
        if action not in ACTIONS:
            raise InvalidLink(f"action must be one of {', '.join(ACTIONS)}")
        report = await self._repo.get_report(report_id)
        if report is None:
            raise LinkNotFound(f"no report has the id {report_id}")
        if action != "dismiss":
            if report.url is None:
                raise LinkNotFound(f"the link '{report.code}' no longer exists; dismiss the "
                                   "report instead")
            if action == "disable":
                await self._links.update(report.code, {"disabled": True}, actor=actor)
            else:
                target = normalise_domain(domain) if domain else host_of(report.url)
                await self.block([target], actor=actor, reason=f"report {report_id}")
        ids = await self._repo.resolve_reports(report.code, action=action, by=actor.name,
                                               now=self._clock())
        await self._record(actor, "report.resolve", report.code,
                           {"action": action, "reports": ids})
        resolved = await self._repo.get_report(report_id)
        return (resolved or report), ids
