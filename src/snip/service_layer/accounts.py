"""Account use cases: users, API keys, authentication of a key, the first admin, the audit log."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from snip.domain import links
from snip.domain.accounts import (
    ADMIN,
    AccountExists,
    AccountNotFound,
    Actor,
    ApiKey,
    AuditEntry,
    InvalidAccount,
    NewKey,
    User,
    UserRole,
    key_digest,
    new_key,
    parse_scopes,
    plausible_key,
    shown_prefix,
    validate_expiry,
    validate_key_name,
    validate_role,
    validate_user_name,
)
from snip.domain.errors import Forbidden, Unauthorized
from snip.service_layer.ports import DuplicateKey

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
LAST_USED_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often per key
_CACHE_MAX = 10_000


KeyRow = tuple[str, str, frozenset[str], str | None]  # digest, shown prefix, scopes, name


class AccountRepository(Protocol):
    """Where users, keys and the audit log live (adapters.sql.accounts). Each call is one
    transaction; an audit entry is written in the same transaction as the change it records."""

    async def add_user(self, name: str, role: UserRole, now: datetime, *,
                       only_if_empty: bool = False, key: KeyRow | None = None,
                       audit: tuple[str, str, str, dict[str, Any]] | None = None,
                       ) -> tuple[User, ApiKey | None] | None:
        """Raise `DuplicateKey("name")` if taken; None if `only_if_empty` and users exist."""

    async def get_user(self, name: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def count_users(self) -> int: ...

    async def update_user(self, name: str, changes: dict[str, Any], now: datetime,
                          audit: tuple[str, str, str, dict[str, Any]]) -> User | None: ...

    async def add_key(self, user: User, key: KeyRow, expires_at: datetime | None,
                      now: datetime, audit: tuple[str, str, str, dict[str, Any]]) -> ApiKey: ...

    async def list_keys(self, user: str | None = None) -> list[ApiKey]: ...

    async def get_key(self, key_id: int) -> ApiKey | None: ...

    async def revoke_key(self, key_id: int, now: datetime,
                         audit: tuple[str, str, str, dict[str, Any]]) -> bool: ...

    async def find_key(self, digest: str) -> tuple[str, ApiKey, UserRole, bool] | None:
        """(stored digest, key, its user's role, user disabled) for this digest, or None."""

    async def touch_key(self, key_id: int, now: datetime, older_than: datetime) -> None: ...

    async def audit(self, now: datetime, actor: str, action: str, target: str,
                    details: dict[str, Any]) -> None: ...

    async def list_audit(self, *, limit: int, offset: int, actor: str | None = None,
                         action: str | None = None) -> tuple[list[AuditEntry], int]: ...


@dataclass(frozen=True, slots=True)
class _Cached:
    actor: Actor
    expires_at: float | None  # POSIX seconds: the key's own expiry
    until: float  # monotonic: trust this entry until then


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the first start did: the admin made and its key (None when it was given)."""

    user: User
    key: str | None


class AccountService:
    """The only way users and keys change. Successful key lookups are cached for `cache_ttl`
    seconds per process: a key revoked (or a user disabled) elsewhere stops working within
    that time, and at once in the process that revoked it.
    """

    def __init__(self, repo: AccountRepository, *, cache_ttl: float = 5.0,
                 clock: Callable[[], datetime] = links.utcnow,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self._repo = repo
        self._ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[int, float] = {}  # key id → monotonic time of our last write
        self._on_failure = on_failure

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(self, raw: str) -> Actor:
        """The actor an API key stands for; `Unauthorized` if it is unknown, revoked, expired
        or its user is disabled. Never anonymous."""
        if not plausible_key(raw):
            self._failed("malformed")
            raise Unauthorized("the API key is not valid")
        digest = key_digest(raw)
        now_mono = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached.until > now_mono:
            if cached.expires_at is None or cached.expires_at > time.time():
                await self._touch(cached.actor, now_mono)
                return cached.actor
            self._cache.pop(digest, None)
        found = await self._repo.find_key(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            self._failed("unknown")
            raise Unauthorized("the API key is not valid")
        _, key, role, disabled = found
        now = self._clock()
        state = key.state(now)
        if state != "active" or disabled:
            self._failed(state if state != "active" else "disabled")
            raise Unauthorized(f"the API key is {state if state != 'active' else 'of a disabled user'}")
        # A key keeps its scopes, but `admin` only counts while its user is an admin (demoted).
        scopes = key.scopes if role == "admin" else key.scopes - {ADMIN}
        actor = Actor(key.user, role, scopes, key.id)
        if self._ttl > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = _Cached(
                actor, key.expires_at.timestamp() if key.expires_at else None, now_mono + self._ttl)
        if key.last_used_at is not None and key.last_used_at > now - LAST_USED_EVERY:
            self._touched.setdefault(key.id, now_mono)
        await self._touch(actor, now_mono)
        return actor

    def _failed(self, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(reason)

    async def _touch(self, actor: Actor, now_mono: float) -> None:
        """Record use at most once a minute per key and process: not a write per request."""
        key_id = actor.key_id
        if key_id is None:
            return
        last = self._touched.get(key_id)
        if last is not None and now_mono - last < LAST_USED_EVERY.total_seconds():
            return
        self._touched[key_id] = now_mono
        now = self._clock()
        try:
            await self._repo.touch_key(key_id, now, now - LAST_USED_EVERY)
        except Exception:  # bookkeeping only: never fail a request for it
            log.warning("could not record the use of API key %s", key_id, exc_info=True)

    def forget(self) -> None:
        """Drop every cached key lookup (after a revocation or a user change here)."""
        self._cache.clear()

    # -- users -------------------------------------------------------------------------------

    async def create_user(self, actor: Actor, name: str, role: str = "user",
                          *, with_key: bool = False) -> tuple[User, NewKey | None]:
        _need_admin(actor)
        name, checked_role = validate_user_name(name), validate_role(role)
        raw = new_key() if with_key else None
        key = (key_digest(raw), shown_prefix(raw), parse_scopes(None, checked_role), None) \
            if raw else None
        try:
            made = await self._repo.add_user(
                name, checked_role, self._clock(), key=key,
                audit=(actor.name, "user.create", name, {"role": checked_role}))
        except DuplicateKey:
            raise AccountExists(f"a user named '{name}' exists already") from None
        assert made is not None
        user, info = made
        return user, (NewKey(raw, info) if raw and info else None)

    async def bootstrap(self, given_key: str | None = None) -> Bootstrap | None:
        """On a database without users: make the admin `admin` and its key, exactly once.

        Safe to call from several processes or hosts at once: one wins, the others get None.
        `given_key` (SNIP_INITIAL_API_KEY) becomes the admin's key instead of a random one.
        """
        raw = given_key or new_key()
        key = (key_digest(raw), shown_prefix(raw), parse_scopes(None, "admin"), "first admin")
        made = await self._repo.add_user(
            FIRST_ADMIN, "admin", self._clock(), only_if_empty=True, key=key,
            audit=("system", "user.create", FIRST_ADMIN, {"role": "admin", "first_start": True}))
        if made is None:
            return None
        return Bootstrap(made[0], None if given_key else raw)

    async def users(self, actor: Actor) -> list[User]:
        _need_admin(actor)
        return await self._repo.list_users()

    async def user(self, actor: Actor, name: str) -> User:
        _need_admin(actor)
        return await self._user(name)

    async def _user(self, name: str) -> User:
        user = await self._repo.get_user(name)
        if user is None:
            raise AccountNotFound(f"no user is named '{name}'")
        return user

    async def change_user(self, actor: Actor, name: str, *, role: str | None = None,
                          disabled: bool | None = None) -> User:
        _need_admin(actor)
        current = await self._user(name)
        changes: dict[str, Any] = {}
        if role is not None and role != current.role:
            changes["role"] = validate_role(role)
        if disabled is not None and disabled != current.disabled:
            changes["disabled"] = disabled
        if not changes:
            return current
        if actor.name == name and (changes.get("disabled") or changes.get("role") == "user"):
            raise InvalidAccount("an admin cannot disable or demote themselves")
        details = {k: v for k, v in changes.items()} | {
            "before": {k: getattr(current, k) for k in changes}}
        user = await self._repo.update_user(name, changes, self._clock(),
                                            (actor.name, "user.change", name, details))
        if user is None:
            raise AccountNotFound(f"no user is named '{name}'")
        self.forget()
        return user

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, actor: Actor, user: str, *,
                         scopes: str | Sequence[str] | None = None,
                         expires_at: datetime | None = None, name: str | None = None) -> NewKey:
        _need_admin(actor)
        owner = await self._user(user)
        chosen = parse_scopes(scopes, owner.role)
        now = self._clock()
        expires = validate_expiry(expires_at, now)
        label = validate_key_name(name)
        raw = new_key()
        info = await self._repo.add_key(
            owner, (key_digest(raw), shown_prefix(raw), chosen, label), expires, now,
            (actor.name, "key.create", owner.name,
             {"prefix": shown_prefix(raw), "scopes": sorted(chosen),
              "expires_at": expires.isoformat() if expires else None, "name": label}))
        return NewKey(raw, info)

    async def keys(self, actor: Actor, user: str | None = None) -> list[ApiKey]:
        _need_admin(actor)
        if user is not None:
            await self._user(user)
        return await self._repo.list_keys(user)

    async def revoke_key(self, actor: Actor, key_id: int) -> ApiKey:
        _need_admin(actor)
        key = await self._repo.get_key(key_id)
        if key is None:
            raise AccountNotFound(f"no API key has the id {key_id}")
        await self._repo.revoke_key(key_id, self._clock(),
                                    (actor.name, "key.revoke", key.user,
                                     {"key_id": key_id, "prefix": key.prefix}))
        self.forget()
        revoked = await self._repo.get_key(key_id)
        assert revoked is not None
        return revoked

    async def key_of(self, actor: Actor) -> ApiKey | None:
        """The key the actor authenticated with (for GET /me)."""
        return None if actor.key_id is None else await self._repo.get_key(actor.key_id)

    # -- audit -------------------------------------------------------------------------------

    async def record(self, actor: Actor, action: str, target: str,
                     details: dict[str, Any] | None = None) -> None:
        """Append to the audit log (used by other services, e.g. admins changing others' links)."""
        await self._repo.audit(self._clock(), actor.name, action, target, details or {})

    async def audit_log(self, actor: Actor, *, limit: int = 50, offset: int = 0,
                        by: str | None = None, action: str | None = None
                        ) -> tuple[list[AuditEntry], int]:
        _need_admin(actor)
        return await self._repo.list_audit(limit=limit, offset=offset, actor=by, action=action)

    async def has_users(self) -> bool:
        return await self._repo.count_users() > 0


def _need_admin(actor: Actor) -> None:
    if actor.is_admin:
        return
    if actor.is_anonymous:
        raise Unauthorized("this needs an admin's API key")
    raise Forbidden("only an admin (a key with the 'admin' scope) may do this")

