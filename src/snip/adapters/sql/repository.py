"""The link repository on SQL: one short statement or transaction per call, unique keys do the locking."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from snip.adapters.sql.schema import link_counters, link_tags, links
from snip.domain.checks import BLOCKED_BY_BLOCKLIST, host_key, host_of
from snip.domain.errors import StorageUnavailable
from snip.domain.links import Link, LinkQuery, RedirectTarget, as_utc
from snip.service_layer.ports import DuplicateKey, Page

# A link's visits: those taken atomically in links.visits (links with a limit) plus the sum of
# its sharded click counters (written by the click pipeline, snip.adapters.sql.clicks).
_VISITS = (
    links.c.visits + func.coalesce(
        select(func.sum(link_counters.c.clicks))
        .where(link_counters.c.code == links.c.code)
        .scalar_subquery(), 0)
).label("visits")
_LINK_COLUMNS = (
    links.c.id,
    links.c.code,
    links.c.url,
    links.c.url_digest,
    links.c.reuse_key,
    links.c.owner,
    links.c.title,
    links.c.redirect_status,
    links.c.expires_at,
    links.c.max_visits,
    _VISITS,
    links.c.disabled,
    links.c.password_hash,
    links.c.blocked,
    links.c.created_at,
    links.c.updated_at,
)
# Built once: the redirect's lookup is the one query on the hot path.
_TARGET = select(
    links.c.url, links.c.redirect_status, links.c.expires_at, links.c.max_visits,
    links.c.disabled, links.c.password_hash.is_not(None), links.c.blocked,
).where(links.c.code == bindparam("code"))
_UPDATABLE = frozenset(
    {"url", "url_digest", "reuse_key", "title", "redirect_status", "expires_at", "max_visits",
     "disabled", "updated_at", "password_hash", "blocked"}
)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time snip stores is UTC."""
    return None if value is None else as_utc(value)


def _to_db(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction; connection trouble becomes `StorageUnavailable` (503), other errors
    (an integrity error, a bug) pass through. Every SQL adapter of snip goes through this."""
    try:
        async with engine.begin() as conn:
            yield conn
    except IntegrityError:
        raise
    except _MAYBE_UNAVAILABLE as exc:
        if not _is_unavailable(exc):
            raise
        raise StorageUnavailable("the database is unavailable; try again shortly") from exc


class SqlLinkRepository:
    """`LinkRepository` over an async SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self._engine)

    async def add(self, link: Link) -> Link:
        values = {
            "code": link.code,
            "url": link.url,
            "url_digest": link.url_digest,
            "reuse_key": link.reuse_key,
            "owner": link.owner,
            "title": link.title,
            "redirect_status": link.redirect_status,
            "expires_at": _to_db(link.expires_at),
            "max_visits": link.max_visits,
            "visits": link.visits,
            "disabled": link.disabled,
            "password_hash": link.password_hash,
            "blocked": link.blocked,
            "host_key": host_key(host_of(link.url)),
            "created_at": _to_db(link.created_at),
            "updated_at": _to_db(link.updated_at),
        }
        try:
            async with self._begin() as conn:
                result = await conn.execute(insert(links).values(**values).returning(links.c.id))
                link_id = result.scalar_one()
                if link.tags:
                    await conn.execute(
                        insert(link_tags), [{"link_id": link_id, "tag": t} for t in link.tags]
                    )
        except IntegrityError as exc:
            raise DuplicateKey(await self._which_key(link)) from exc
        return link

    async def _which_key(self, link: Link) -> str:
        """After a unique violation, find out which key was taken (portable across drivers)."""
        async with self._begin() as conn:
            taken = await conn.scalar(select(exists().where(links.c.code == link.code)))
        return "code" if taken or link.reuse_key is None else "reuse_key"

    async def get(self, code: str) -> Link | None:
        async with self._begin() as conn:
            return await self._one(conn, links.c.code == code)

    async def get_target(self, code: str) -> RedirectTarget | None:
        """The redirect's lookup on a cache miss: one indexed SELECT of five columns, no tags."""
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(_TARGET, {"code": code})).first()
        except _MAYBE_UNAVAILABLE as exc:
            if not _is_unavailable(exc):
                raise
            raise StorageUnavailable("the database is unavailable; try again shortly") from exc
        if row is None:
            return None
        url, status, expires_at, max_visits, disabled, protected, blocked = row
        expires = _utc(expires_at)
        return RedirectTarget(code=code, location=url, status=int(status),
                              expires_at=expires.timestamp() if expires else None,
                              max_visits=max_visits, disabled=bool(disabled),
                              protected=bool(protected), blocked=bool(blocked))

    async def get_by_reuse_key(self, key: str) -> Link | None:
        async with self._begin() as conn:
            return await self._one(conn, links.c.reuse_key == key)

    async def _one(self, conn: AsyncConnection, where: Any) -> Link | None:
        row = (await conn.execute(select(*_LINK_COLUMNS).where(where))).mappings().first()
        if row is None:
            return None
        tags = await self._tags(conn, [row["id"]])
        return _link(row, tags.get(row["id"], ()))

    async def _tags(self, conn: AsyncConnection, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        if not ids:
            return {}
        out: dict[int, list[str]] = {}
        rows = await conn.execute(
            select(link_tags.c.link_id, link_tags.c.tag)
            .where(link_tags.c.link_id.in_(ids))
            .order_by(link_tags.c.link_id, link_tags.c.tag)
        )
        for link_id, tag in rows:
            out.setdefault(link_id, []).append(tag)
        return {k: tuple(v) for k, v in out.items()}

    async def list(self, query: LinkQuery) -> Page:
        conditions = []
        if query.owner is not None:
            conditions.append(links.c.owner == query.owner)
        if query.search:
            pattern = "%" + _escape_like(query.search) + "%"
            conditions.append(
                or_(links.c.url.ilike(pattern, escape="\\"), links.c.title.ilike(pattern, escape="\\"))
            )
        for tag in query.tags:
            conditions.append(
                exists().where(and_(link_tags.c.link_id == links.c.id, link_tags.c.tag == tag))
            )
        where = and_(True, *conditions)
        column = _VISITS if query.order_by == "visits" else links.c[query.order_by]
        order = column.desc() if query.descending else column.asc()
        tiebreak = links.c.id.desc() if query.descending else links.c.id.asc()
        stmt: Select[Any] = (
            select(*_LINK_COLUMNS).where(where).order_by(order, tiebreak)
            .limit(query.limit).offset(query.offset)
        )
        async with self._begin() as conn:
            total = await conn.scalar(select(func.count()).select_from(links).where(where)) or 0
            rows = (await conn.execute(stmt)).mappings().all()
            tags = await self._tags(conn, [r["id"] for r in rows])
        return Page(items=[_link(r, tags.get(r["id"], ())) for r in rows], total=int(total))

    async def update(self, code: str, changes: Mapping[str, Any]) -> Link | None:
        fields = {k: v for k, v in changes.items() if k in _UPDATABLE}
        for key in ("expires_at", "updated_at"):
            if key in fields:
                fields[key] = _to_db(fields[key])
        if "url" in fields:  # a new destination (checked already): a blocklist block no longer holds
            fields["host_key"] = host_key(host_of(fields["url"]))
            by_list = links.c.blocked_by == BLOCKED_BY_BLOCKLIST
            fields["blocked"] = case((by_list, false()), else_=links.c.blocked)
            fields["blocked_by"] = case((by_list, null()), else_=links.c.blocked_by)
        async with self._begin() as conn:
            link_id = await conn.scalar(
                update(links).where(links.c.code == code).values(**fields).returning(links.c.id)
                if fields
                else select(links.c.id).where(links.c.code == code)
            )
            if link_id is None:
                return None
            if fields.get("max_visits") is not None:
                # A limit is checked against links.visits alone (atomically): move the visits
                # counted in the click counter shards there first.
                await conn.execute(update(links).where(links.c.id == link_id)
                                   .values(visits=_VISITS.element))
                await conn.execute(delete(link_counters).where(link_counters.c.code == code))
            if "tags" in changes:
                await conn.execute(delete(link_tags).where(link_tags.c.link_id == link_id))
                if changes["tags"]:
                    await conn.execute(
                        insert(link_tags), [{"link_id": link_id, "tag": t} for t in changes["tags"]]
                    )
            return await self._one(conn, links.c.id == link_id)

    async def delete(self, code: str) -> bool:
        async with self._begin() as conn:
            link_id = await conn.scalar(select(links.c.id).where(links.c.code == code))
            if link_id is None:
                return False
            await conn.execute(delete(link_tags).where(link_tags.c.link_id == link_id))
            await conn.execute(delete(links).where(links.c.id == link_id))
            return True

    async def take_visit(self, code: str) -> bool:
        stmt = (
            update(links)
            .where(
                links.c.code == code,
                links.c.disabled == False,  # noqa: E712 (SQL expression, not a Python comparison)
                or_(links.c.max_visits.is_(None), links.c.visits < links.c.max_visits),
            )
            .values(visits=links.c.visits + 1)
        )
        async with self._begin() as conn:
            result = await conn.execute(stmt)
            return bool(result.rowcount == 1)

    async def count_visits(self, code: str) -> int | None:
        async with self._begin() as conn:
            value = await conn.scalar(select(links.c.visits).where(links.c.code == code))
            return None if value is None else int(value)

    async def stats(self) -> tuple[int, int | None]:
        """(links stored, database size on disk in bytes, if known) for metrics."""
        async with self._begin() as conn:
            total = int(await conn.scalar(select(func.count()).select_from(links)) or 0)
            if conn.dialect.name == "postgresql":
                size = await conn.scalar(text("SELECT pg_database_size(current_database())"))
                return total, int(size)
        path = self._engine.url.database
        if not path or path == ":memory:":
            return total, None
        return total, await asyncio.to_thread(_files_size, path, path + "-wal")

    async def ping(self) -> None:
        async with self._begin() as conn:
            await conn.execute(select(1))


def _files_size(*paths: str) -> int:
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# What a database that is down, restarting, frozen or overloaded raises. asyncpg's socket errors
# and timeouts (connect and `command_timeout`) come through SQLAlchemy unwrapped; PoolTimeout is
# SQLAlchemy's own when every pooled connection is busy (stuck) for `pool_timeout` seconds.
_MAYBE_UNAVAILABLE = (DBAPIError, OSError, TimeoutError, PoolTimeout)
# SQLSTATE classes that mean "try again later", not "bad statement": 08 connection exception
# (asyncpg's ConnectionDoesNotExistError is 08003), 53 insufficient resources (53300 too many
# connections), 57 operator intervention (57P01 admin shutdown, 57P03 cannot connect now:
# starting up / shutting down / in recovery, 57014 statement timeout or cancel).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")


def _is_unavailable(exc: Exception) -> bool:
    """Connection-level failures (as opposed to a bad statement) mean 'try again later'."""
    if not isinstance(exc, DBAPIError):
        return True  # socket error, timeout, pool exhausted
    if exc.connection_invalidated or isinstance(exc.orig, (OSError, TimeoutError)):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)  # PostgreSQL; SQLite has none
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    # SQLite (no SQLSTATE): "database is locked" past busy_timeout, and the like.
    message = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    markers = ("connection", "could not connect", "timeout", "timed out", "locked", "busy",
               "terminat", "shutting down", "refused", "closed", "the database system is")
    return any(m in message for m in markers)


def _link(row: Any, tags: tuple[str, ...]) -> Link:
    return Link(
        code=row["code"],
        url=row["url"],
        url_digest=row["url_digest"],
        reuse_key=row["reuse_key"],
        owner=row["owner"],
        title=row["title"],
        tags=tags,
        redirect_status=int(row["redirect_status"]),
        expires_at=_utc(row["expires_at"]),
        max_visits=row["max_visits"],
        visits=int(row["visits"]),
        disabled=bool(row["disabled"]),
        password_hash=row["password_hash"],
        blocked=bool(row["blocked"]),
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
    )
