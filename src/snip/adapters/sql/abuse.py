"""The blocklist and reports on SQL: blocked domains, blocking their links, reports of abuse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from snip.adapters.sql.repository import _utc, transaction
from snip.adapters.sql.schema import blocked_domains, blocklist_state, links, reports
from snip.domain.checks import BLOCKED_BY_BLOCKLIST, host_key, host_of, key_range, suffixes
from snip.service_layer.abuse import BlockedDomain, Report

BACKFILL_BATCH = 1000


def _in_domain(domain: str) -> Any:
    """links whose host is `domain` or one of its subdomains: one range on ix_links_host_key."""
    key, low, high = key_range(domain)
    return or_(links.c.host_key == key, and_(links.c.host_key >= low, links.c.host_key < high))


class SqlAbuseRepository:
    """Blocked domains, the links they block, and reports, over an async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self._engine)

    # -- the blocklist ---------------------------------------------------------------------

    async def revision(self) -> int:
        async with self._begin() as conn:
            value = await conn.scalar(select(blocklist_state.c.revision)
                                      .where(blocklist_state.c.id == 1))
        return int(value or 0)

    async def domains(self) -> tuple[int, frozenset[str]]:
        """(revision, every blocked domain), read in one transaction."""
        async with self._begin() as conn:
            value = await conn.scalar(select(blocklist_state.c.revision)
                                      .where(blocklist_state.c.id == 1))
            rows = await conn.scalars(select(blocked_domains.c.domain))
            return int(value or 0), frozenset(rows)

    async def match(self, candidates: list[str]) -> str | None:
        """The most specific of `candidates` (a host's suffixes, most specific first) listed."""
        async with self._begin() as conn:
            found = set(await conn.scalars(
                select(blocked_domains.c.domain).where(blocked_domains.c.domain.in_(candidates))))
        return next((c for c in candidates if c in found), None)

    async def list_domains(self, *, with_counts: bool = True) -> list[BlockedDomain]:
        async with self._begin() as conn:
            rows = (await conn.execute(
                select(blocked_domains).order_by(blocked_domains.c.domain))).mappings().all()
            out = []
            for row in rows:
                count = 0
                if with_counts:
                    count = int(await conn.scalar(
                        select(func.count()).select_from(links).where(
                            _in_domain(row["domain"]), links.c.blocked == true())) or 0)
                out.append(BlockedDomain(row["domain"], row["source"], row["reason"],
                                         row["added_by"], _utc(row["created_at"]),  # type: ignore[arg-type]
                                         count))
        return out

    async def add_domains(self, domains: Sequence[str], *, source: str, added_by: str,
                          reason: str | None, now: datetime) -> list[str]:
        """Insert the domains not yet listed (others are left as they are); the new ones."""
        if not domains:
            return []
        async with self._begin() as conn:
            existing = set(await conn.scalars(
                select(blocked_domains.c.domain).where(blocked_domains.c.domain.in_(domains))))
            new = [d for d in dict.fromkeys(domains) if d not in existing]
            if not new:
                return []
            values = [{"domain": d, "source": source, "reason": reason, "added_by": added_by,
                       "created_at": now} for d in new]
            # Several processes may sync the same setting at once: a conflict is not an error.
            if conn.dialect.name == "postgresql":
                stmt: Any = postgresql.insert(blocked_domains).on_conflict_do_nothing()
            else:
                stmt = sqlite.insert(blocked_domains).on_conflict_do_nothing()
            await conn.execute(stmt, values)
            await self._bump(conn)
        return new

    async def remove_domains(self, domains: Iterable[str], *, source: str | None = None
                             ) -> list[str]:
        """Delete listed domains (only those from `source`, if given); the ones removed."""
        domains = list(domains)
        if not domains:
            return []
        where: Any = blocked_domains.c.domain.in_(domains)
        if source is not None:
            where = and_(where, blocked_domains.c.source == source)
        async with self._begin() as conn:
            removed = list(await conn.scalars(select(blocked_domains.c.domain).where(where)))
            if removed:
                await conn.execute(delete(blocked_domains)
                                   .where(blocked_domains.c.domain.in_(removed)))
                await self._bump(conn)
        return removed

    async def domains_from(self, source: str) -> list[str]:
        async with self._begin() as conn:
            return list(await conn.scalars(
                select(blocked_domains.c.domain).where(blocked_domains.c.source == source)))

    async def _bump(self, conn: AsyncConnection) -> None:
        await conn.execute(update(blocklist_state).where(blocklist_state.c.id == 1)
                           .values(revision=blocklist_state.c.revision + 1))

    # -- links of a domain -----------------------------------------------------------------

    async def backfill_hosts(self) -> int:
        """Fill `host_key` of links stored without one (written by a path that skipped it)."""
        done = 0
        while True:
            async with self._begin() as conn:
                rows = (await conn.execute(
                    select(links.c.id, links.c.url).where(links.c.host_key.is_(None))
                    .limit(BACKFILL_BATCH))).all()
                if not rows:
                    return done
                await conn.execute(
                    update(links).where(links.c.id == bindparam("b_id"))
                    .values(host_key=bindparam("b_key")),
                    [{"b_id": r.id, "b_key": host_key(host_of(r.url)) or "-"} for r in rows],
                )
                done += len(rows)

    async def block_links(self, domains: Sequence[str]) -> list[str]:
        """Block every unblocked link to one of `domains` (or a subdomain) still listed, in one
        UPDATE over their host_key ranges; the codes that changed."""
        if not domains:
            return []
        async with self._begin() as conn:
            # Only domains still listed: a late sweep must not undo a removal made meanwhile.
            listed = sorted(await conn.scalars(
                select(blocked_domains.c.domain).where(blocked_domains.c.domain.in_(domains))))
            if not listed:
                return []
            result = await conn.execute(
                update(links).where(or_(*[_in_domain(d) for d in listed]),
                                    links.c.blocked == False)  # noqa: E712
                .values(blocked=True, blocked_by=BLOCKED_BY_BLOCKLIST)
                .returning(links.c.code))
            return list(result.scalars())

    async def unblock_links(self, domain: str) -> list[str]:
        """Release the links of `domain` the blocklist blocked, except those another listed
        entry (a parent domain, or a subdomain) still covers; the codes that changed."""
        async with self._begin() as conn:
            parents = [d for d in suffixes(domain) if d != domain]
            overlapping = list(await conn.scalars(select(blocked_domains.c.domain).where(or_(
                blocked_domains.c.domain.in_(parents or [""]),
                blocked_domains.c.domain.like("%." + domain.replace("_", "\\_"), escape="\\")))))
            where = [_in_domain(domain), links.c.blocked_by == BLOCKED_BY_BLOCKLIST]
            where += [~_in_domain(other) for other in overlapping]
            result = await conn.execute(
                update(links).where(*where).values(blocked=False, blocked_by=None)
                .returning(links.c.code))
            return list(result.scalars())

    # -- reports ---------------------------------------------------------------------------

    async def link_exists(self, code: str) -> bool:
        async with self._begin() as conn:
            return await conn.scalar(select(links.c.id).where(links.c.code == code)) is not None

    async def add_report(self, *, code: str, reason: str, comment: str | None, reporter: str,
                         reporter_ip: str | None, now: datetime) -> int:
        async with self._begin() as conn:
            result = await conn.execute(
                insert(reports).values(code=code, reason=reason, comment=comment,
                                       reporter=reporter, reporter_ip=reporter_ip,
                                       status="open", created_at=now)
                .returning(reports.c.id))
            return int(result.scalar_one())

    async def list_reports(self, *, status: str | None, code: str | None, limit: int,
                           offset: int) -> tuple[list[Report], int]:
        where = []
        if status is not None:
            where.append(reports.c.status == status)
        if code is not None:
            where.append(reports.c.code == code)
        condition = and_(true(), *where)
        open_counts = (
            select(reports.c.code, func.count().label("n")).where(reports.c.status == "open")
            .group_by(reports.c.code).subquery()
        )
        stmt = (
            select(reports, links.c.url, links.c.owner, links.c.disabled, links.c.blocked,
                   func.coalesce(open_counts.c.n, 0).label("open_reports"))
            .select_from(reports.outerjoin(links, links.c.code == reports.c.code)
                         .outerjoin(open_counts, open_counts.c.code == reports.c.code))
            .where(condition).order_by(reports.c.created_at.desc(), reports.c.id.desc())
            .limit(limit).offset(offset)
        )
        async with self._begin() as conn:
            total = int(await conn.scalar(
                select(func.count()).select_from(reports).where(condition)) or 0)
            rows = (await conn.execute(stmt)).mappings().all()
        return [_report(r) for r in rows], total

    async def get_report(self, report_id: int) -> Report | None:
        items = await self._select_reports(reports.c.id == report_id)
        return items[0] if items else None

    async def _select_reports(self, where: Any) -> list[Report]:
        stmt = (
            select(reports, links.c.url, links.c.owner, links.c.disabled, links.c.blocked)
            .select_from(reports.outerjoin(links, links.c.code == reports.c.code)).where(where)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_report(r) for r in rows]

    async def resolve_reports(self, code: str, *, action: str, by: str, now: datetime
                              ) -> list[int]:
        """Close every open report of `code` with `action`; their ids."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(reports).where(reports.c.code == code, reports.c.status == "open")
                .values(status="resolved", action=action, resolved_by=by, resolved_at=now)
                .returning(reports.c.id))
            return sorted(result.scalars())


def _report(row: Any) -> Report:
    return Report(
        id=int(row["id"]), code=row["code"], reason=row["reason"], comment=row["comment"],
        reporter=row["reporter"], status=row["status"], action=row["action"],
        resolved_by=row["resolved_by"], resolved_at=_utc(row["resolved_at"]),
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        url=row["url"], owner=row["owner"],
        disabled=None if row["disabled"] is None else bool(row["disabled"]),
        blocked=None if row["blocked"] is None else bool(row["blocked"]),
        open_reports=int(row.get("open_reports", 0) or 0),
    )
