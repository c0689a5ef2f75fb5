"""Users, API keys and the audit log on SQL: short transactions, unique keys do the locking."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from snip.adapters.sql.repository import _to_db, _utc, transaction
from snip.adapters.sql.schema import api_keys, audit_log, users
from snip.domain.accounts import ApiKey, AuditEntry, User, UserRole, format_scopes
from snip.service_layer.ports import DuplicateKey

_KEY_COLUMNS = (
    api_keys.c.id, users.c.name.label("user"), api_keys.c.prefix, api_keys.c.scopes,
    api_keys.c.created_at, api_keys.c.name, api_keys.c.expires_at, api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)
_KEYS = api_keys.join(users, users.c.id == api_keys.c.user_id)


class SqlAccountRepository:
    """Users, keys and audit entries in the same database as the links."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self._engine)

    # -- users -------------------------------------------------------------------------------

    async def add_user(self, name: str, role: UserRole, now: datetime,
                       *, only_if_empty: bool = False,
                       key: tuple[str, str, frozenset[str], str | None] | None = None,
                       audit: tuple[str, str, str, dict[str, Any]] | None = None,
                       ) -> tuple[User, ApiKey | None] | None:
        """Insert a user (and optionally its first key and an audit entry) in one transaction.

        `only_if_empty`: insert only when there is no user at all; None if there was one. With
        concurrent callers, the unique name makes exactly one win (the others get None).
        `key` is (digest, prefix, scopes, name). Raises `DuplicateKey` if the name is taken.
        """
        values = {"name": name, "role": role, "disabled": False, "created_at": _to_db(now),
                  "updated_at": _to_db(now)}
        try:
            async with self._begin() as conn:
                if only_if_empty:
                    # One statement: it takes SQLite's write lock before it reads, and on
                    # PostgreSQL a concurrent twin waits on the unique name, then fails.
                    source = select(*(literal(v).label(k) for k, v in values.items())).where(
                        ~exists().where(users.c.id.is_not(None)))
                    result = await conn.execute(
                        insert(users).from_select(list(values), source).returning(users.c.id))
                    user_id = result.scalar_one_or_none()
                    if user_id is None:
                        return None
                else:
                    user_id = (await conn.execute(
                        insert(users).values(**values).returning(users.c.id))).scalar_one()
                user = User(int(user_id), name, role, False, now, now)
                made = None
                if key is not None:
                    made = await self._insert_key(conn, user, key, None, now)
                if audit is not None:
                    await self._audit(conn, now, *audit)
        except IntegrityError:
            if only_if_empty:
                return None
            raise DuplicateKey("name") from None
        return user, made

    async def get_user(self, name: str) -> User | None:
        async with self._begin() as conn:
            row = (await conn.execute(select(users).where(users.c.name == name))).mappings().first()
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        async with self._begin() as conn:
            rows = (await conn.execute(select(users).order_by(users.c.name))).mappings().all()
        return [_user(r) for r in rows]

    async def count_users(self) -> int:
        async with self._begin() as conn:
            return int(await conn.scalar(select(func.count()).select_from(users)) or 0)

    async def update_user(self, name: str, changes: dict[str, Any], now: datetime,
                          audit: tuple[str, str, str, dict[str, Any]]) -> User | None:
        async with self._begin() as conn:
            row = (await conn.execute(
                update(users).where(users.c.name == name)
                .values(**changes, updated_at=_to_db(now)).returning(*users.c)
            )).mappings().first()
            if row is None:
                return None
            await self._audit(conn, now, *audit)
        return _user(row)

    # -- keys --------------------------------------------------------------------------------

    async def add_key(self, user: User, key: tuple[str, str, frozenset[str], str | None],
                      expires_at: datetime | None, now: datetime,
                      audit: tuple[str, str, str, dict[str, Any]]) -> ApiKey:
        async with self._begin() as conn:
            made = await self._insert_key(conn, user, key, expires_at, now)
            await self._audit(conn, now, *audit[:3], {**audit[3], "key_id": made.id})
        return made

    async def _insert_key(self, conn: AsyncConnection, user: User,
                          key: tuple[str, str, frozenset[str], str | None],
                          expires_at: datetime | None, now: datetime) -> ApiKey:
        digest, prefix, scopes, name = key
        key_id = (await conn.execute(insert(api_keys).values(
            user_id=user.id, digest=digest, prefix=prefix, name=name,
            scopes=format_scopes(scopes), created_at=_to_db(now), expires_at=_to_db(expires_at),
        ).returning(api_keys.c.id))).scalar_one()
        return ApiKey(id=int(key_id), user=user.name, prefix=prefix, scopes=scopes,
                      created_at=now, name=name, expires_at=expires_at)

    async def list_keys(self, user: str | None = None) -> list[ApiKey]:
        stmt = select(*_KEY_COLUMNS).select_from(_KEYS).order_by(api_keys.c.id)
        if user is not None:
            stmt = stmt.where(users.c.name == user)
        async with self._begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_key(r) for r in rows]

    async def get_key(self, key_id: int) -> ApiKey | None:
        async with self._begin() as conn:
            row = (await conn.execute(select(*_KEY_COLUMNS).select_from(_KEYS)
                                      .where(api_keys.c.id == key_id))).mappings().first()
        return None if row is None else _key(row)

    async def revoke_key(self, key_id: int, now: datetime,
                         audit: tuple[str, str, str, dict[str, Any]]) -> bool:
        """Mark the key revoked (if not already); False if there is no such key."""
        async with self._begin() as conn:
            found = await conn.scalar(select(api_keys.c.id).where(api_keys.c.id == key_id))
            if found is None:
                return False
            revoked = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_to_db(now)))
            if revoked.rowcount:
                await self._audit(conn, now, *audit)
        return True

    async def find_key(self, digest: str) -> tuple[str, ApiKey, UserRole, bool] | None:
        """The key with this digest: (its digest as stored, the key, its user's role, disabled)."""
        stmt = (select(api_keys.c.digest, users.c.role, users.c.disabled, *_KEY_COLUMNS)
                .select_from(_KEYS).where(api_keys.c.digest == digest))
        async with self._begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        return str(row["digest"]), _key(row), row["role"], bool(row["disabled"])

    async def touch_key(self, key_id: int, now: datetime, older_than: datetime) -> None:
        """Set last_used_at, unless another process did so recently (one cheap UPDATE)."""
        async with self._begin() as conn:
            await conn.execute(
                update(api_keys).where(
                    api_keys.c.id == key_id,
                    or_(api_keys.c.last_used_at.is_(None),
                        api_keys.c.last_used_at < _to_db(older_than)),
                ).values(last_used_at=_to_db(now)))

    # -- audit -------------------------------------------------------------------------------

    async def audit(self, now: datetime, actor: str, action: str, target: str,
                    details: dict[str, Any]) -> None:
        async with self._begin() as conn:
            await self._audit(conn, now, actor, action, target, details)

    async def _audit(self, conn: AsyncConnection, now: datetime, actor: str, action: str,
                     target: str, details: dict[str, Any] | None = None) -> None:
        await conn.execute(insert(audit_log).values(
            at=_to_db(now), actor=actor[:64], action=action[:32], target=target[:200],
            details=json.dumps(details or {}, default=str, sort_keys=True)))

    async def list_audit(self, *, limit: int, offset: int, actor: str | None = None,
                         action: str | None = None) -> tuple[list[AuditEntry], int]:
        conditions = []
        if actor is not None:
            conditions.append(audit_log.c.actor == actor)
        if action is not None:
            conditions.append(audit_log.c.action == action)
        where = and_(True, *conditions)
        async with self._begin() as conn:
            total = await conn.scalar(select(func.count()).select_from(audit_log).where(where))
            rows = (await conn.execute(
                select(audit_log).where(where).order_by(audit_log.c.id.desc())
                .limit(limit).offset(offset))).mappings().all()
        return [AuditEntry(id=int(r["id"]), at=_utc(r["at"]), actor=r["actor"],  # type: ignore[arg-type]
                           action=r["action"], target=r["target"],
                           details=json.loads(r["details"] or "{}")) for r in rows], int(total or 0)


def _user(row: Any) -> User:
    return User(id=int(row["id"]), name=row["name"], role=row["role"],
                disabled=bool(row["disabled"]), created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
                updated_at=_utc(row["updated_at"]))  # type: ignore[arg-type]


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=int(row["id"]), user=row["user"], prefix=row["prefix"],
        scopes=frozenset(s for s in row["scopes"].split(",") if s),
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        name=row["name"], expires_at=_utc(row["expires_at"]),
        last_used_at=_utc(row["last_used_at"]), revoked_at=_utc(row["revoked_at"]),
    )
