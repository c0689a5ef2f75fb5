"""Link use cases: create, read, list, change and delete links, and resolve a code for the redirect."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from time import perf_counter
from typing import Any

from snip.domain import codes, links, urls
from snip.domain.accounts import Actor
from snip.domain.errors import (
    CodeSpaceExhausted,
    CodeTaken,
    InvalidLink,
    LinkNotFound,
    Unauthorized,
)
from snip.domain.links import ANONYMOUS_OWNER, Link, LinkQuery, RedirectTarget
from snip.service_layer.checks import CheckerChain
from snip.service_layer.passwords import Passwords
from snip.service_layer.ports import (
    MISS,
    DuplicateKey,
    LinkRepository,
    Page,
    RedirectCache,
    SharedCache,
)

log = logging.getLogger(__name__)

RANDOM_CODE_ATTEMPTS = 8


@dataclass(slots=True)
class NewLink:
    """What a caller asks for; everything but the URL is optional."""

    url: str
    code: str | None = None
    title: str | None = None
    tags: Sequence[str] | None = None
    expires_at: datetime | None = None
    max_visits: int | None = None
    redirect_status: int | None = None
    reuse: bool | None = None
    owner: str = ANONYMOUS_OWNER
    password: str | None = None  # hashed (argon2id, in a thread pool) before it is stored


@dataclass(frozen=True, slots=True)
class Created:
    link: Link
    created: bool  # False when `reuse` handed back an existing link


PATCHABLE = frozenset(
    {"url", "title", "tags", "expires_at", "max_visits", "redirect_status", "disabled"}
) | {"password"}  # password: a new one, or None to remove it


class LinkService:
    """The only way links are created or changed: the HTTP API and the CLI both call this."""

    def __init__(
        self,
        repo: LinkRepository,
        cache: RedirectCache,
        *,
        base_url: str,
        code_length: int = 7,
        custom_code_max_length: int = codes.MAX_CUSTOM_CODE_LENGTH,
        default_redirect_status: int = 302,
        reuse_default: bool = False,
        max_url_bytes: int = urls.MAX_URL_BYTES,
        clock: Callable[[], datetime] = links.utcnow,
        shared: SharedCache | None = None,
        audit: Callable[[Actor, str, str, dict[str, Any]], Awaitable[None]] | None = None,
        passwords: Passwords | None = None,
        checker: CheckerChain | None = None,
    ) -> None:
        self._repo = repo
        self.passwords = passwords or Passwords()
        self.checker = checker  # URL checkers (the blocklist...): BlockedURL if one refuses
        self._cache = cache
        self._shared = shared
        self._audit = audit  # records admins' changes to others' links
        self.base_url = base_url.rstrip("/")
        self._self_origins = (urls.origin_of(base_url),)
        self._code_length = code_length
        self._custom_max = custom_code_max_length
        self._default_status = default_redirect_status
        self._reuse_default = reuse_default
        self._max_url_bytes = max_url_bytes
        self._clock = clock

    # -- helpers -----------------------------------------------------------------------------

    def short_url(self, code: str) -> str:
        return f"{self.base_url}/{code}"

    def normalise_url(self, raw: str) -> str:
        return urls.normalise_url(
            raw, self_origins=self._self_origins, max_bytes=self._max_url_bytes
        )

    async def forget(self, codes: Iterable[str]) -> None:
        """Links changed in bulk behind this service (the blocklist): every cache tier forgets."""
        codes = list(codes)
        for code in codes:
            self._cache.invalidate(code)
        if self._shared is not None:
            await self._shared.invalidate_many(codes)

    async def _changed(self, code: str) -> None:
        """A link was created, changed or deleted: every cache tier forgets it."""
        self._cache.invalidate(code)
        if self._shared is not None:
            await self._shared.invalidate(code)

    # -- use cases ---------------------------------------------------------------------------

    async def create(self, new: NewLink, actor: Actor | None = None) -> Created:
        """`actor` (None: the CLI or a job) owns the link; anonymous links are owned by '-'."""
        if actor is not None and not actor.is_system:
            new = replace(new, owner=actor.name)
        url = self.normalise_url(new.url)
        if self.checker is not None:
            await self.checker.enforce(url)
        now = self._clock()
        custom = (
            codes.validate_custom_code(new.code, max_length=self._custom_max)
            if new.code is not None
            else None
        )
        status = links.validate_redirect_status(
            new.redirect_status if new.redirect_status is not None else self._default_status
        )
        expires_at = links.validate_expires_at(new.expires_at, now)
        max_visits = links.validate_max_visits(new.max_visits)
        title = links.validate_title(new.title)
        tags = links.validate_tags(new.tags)
        digest = links.url_digest(url)
        password_hash = None if new.password is None else await self.passwords.hash(new.password)

        reuse = (self._reuse_default if new.reuse is None else new.reuse) and password_hash is None
        key = None
        if reuse and links.is_reusable(expires_at=expires_at, max_visits=max_visits,
                                       disabled=False):
            key = links.reuse_key(new.owner, digest)
            existing = await self._repo.get_by_reuse_key(key)
            if existing is not None and existing.url != url:
                # Two URLs with one digest: never hand out another URL's link (nor claim the key).
                log.error("reuse digest collision", extra={"digest": digest})
                existing, key = None, None
            if existing is not None:
                if custom is None or custom == existing.code:
                    return Created(existing, created=False)
                key = None  # a different custom code: a new link, the old one keeps the key

        attempts = 1 if custom is not None else RANDOM_CODE_ATTEMPTS
        for _ in range(attempts):
            code = custom or codes.generate_code(self._code_length)
            link = Link(
                code=code, url=url, url_digest=digest, reuse_key=key, owner=new.owner,
                title=title, tags=tags, redirect_status=status, expires_at=expires_at,
                max_visits=max_visits, created_at=now, updated_at=now,
                password_hash=password_hash,
            )
            try:
                await self._repo.add(link)
            except DuplicateKey as dup:
                if dup.field == "reuse_key" and key is not None:
                    winner = await self._repo.get_by_reuse_key(key)
                    if winner is not None and winner.url == url and (
                        custom is None or custom == winner.code
                    ):
                        return Created(winner, created=False)
                    key = None  # the winner vanished or holds another code: try without the key
                    continue
                if custom is not None:
                    raise CodeTaken(f"the code '{custom}' is already taken") from None
                log.info("random code collision", extra={"code_length": self._code_length})
                continue
            await self._changed(code)
            return Created(link, created=True)
        if custom is not None:
            raise CodeTaken(f"the code '{custom}' is already taken")
        raise CodeSpaceExhausted(
            f"no free code found in {attempts} tries; raise SNIP_CODE_LENGTH"
        )

    async def get(self, code: str, actor: Actor | None = None) -> Link:
        """A link `actor` may not see is not found, as if it did not exist (None: no check)."""
        link = await self._repo.get(code)
        if link is None or (actor is not None and not actor.sees(link.owner)):
            raise LinkNotFound(f"no link has the code '{code}'")
        return link

    async def list(self, query: LinkQuery, actor: Actor | None = None) -> Page:
        """Admins (and None: the CLI) list every link, users only their own."""
        if actor is not None and not actor.is_admin:
            if actor.is_anonymous:
                raise Unauthorized("listing links needs an API key")
            query = replace(query, owner=actor.name)
        return await self._repo.list(query)

    async def _audit_others(self, actor: Actor | None, action: str, link: Link,
                            details: dict[str, Any]) -> None:
        """The audit log records what admins do to links other people own."""
        if self._audit is None or actor is None or actor.is_system or link.owner == actor.name:
            return
        try:
            await self._audit(actor, action, link.code, {"owner": link.owner, **details})
        except Exception:  # the change is made; a missing audit line must not undo the answer
            log.exception("could not write the audit log", extra={"code": link.code})

    async def update(self, code: str, changes: Mapping[str, Any],
                     actor: Actor | None = None) -> Link:
        unknown = set(changes) - PATCHABLE
        if unknown:
            raise InvalidLink(f"cannot change {', '.join(sorted(unknown))}")
        current = await self.get(code, actor)
        now = self._clock()
        fields: dict[str, Any] = {}
        if "url" in changes:
            if changes["url"] is None:
                raise InvalidLink("url cannot be removed")
            fields["url"] = self.normalise_url(changes["url"])
            if self.checker is not None:
                await self.checker.enforce(fields["url"])
            fields["url_digest"] = links.url_digest(fields["url"])
        if "title" in changes:
            fields["title"] = links.validate_title(changes["title"])
        if "tags" in changes:
            fields["tags"] = links.validate_tags(changes["tags"])
        if "expires_at" in changes:
            fields["expires_at"] = links.validate_expires_at(changes["expires_at"], now)
        if "max_visits" in changes:
            fields["max_visits"] = links.validate_max_visits(changes["max_visits"])
        if "redirect_status" in changes:
            if changes["redirect_status"] is None:
                raise InvalidLink("redirect_status cannot be removed")
            fields["redirect_status"] = links.validate_redirect_status(changes["redirect_status"])
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise InvalidLink("disabled must be true or false")
            fields["disabled"] = changes["disabled"]
        if "password" in changes:
            password = changes["password"]
            fields["password_hash"] = None if password is None else await self.passwords.hash(
                password)
        # A link stops being the one handed out for `reuse` once it can run out or points elsewhere.
        if current.reuse_key is not None and (
            fields.get("url", current.url) != current.url
            or fields.get("password_hash") is not None
            or not links.is_reusable(
                expires_at=fields.get("expires_at", current.expires_at),
                max_visits=fields.get("max_visits", current.max_visits),
                disabled=fields.get("disabled", current.disabled),
            )
        ):
            fields["reuse_key"] = None
        fields["updated_at"] = now
        updated = await self._repo.update(code, fields)
        await self._changed(code)
        if updated is None:
            raise LinkNotFound(f"no link has the code '{code}'")
        await self._audit_others(actor, "link.update", current, {"fields": sorted(changes)})
        return updated

    async def delete(self, code: str, actor: Actor | None = None) -> None:
        current = None if actor is None else await self.get(code, actor)
        deleted = await self._repo.delete(code)
        await self._changed(code)
        if not deleted:
            raise LinkNotFound(f"no link has the code '{code}'")
        if current is not None:
            await self._audit_others(actor, "link.delete", current, {"url": current.url})

    # -- the redirect --------------------------------------------------------------------------

    async def resolve(self, code: str) -> RedirectTarget | None:
        """The redirect target for `code`, from the cache or storage; None if there is no link."""
        cached = self._cache.get(code)
        if cached is not MISS:
            return cached
        if self._shared is not None:
            shared = await self._shared.get(code)
            if shared is not MISS:
                self._cache.put(code, shared)
                return shared
        target = await self._repo.get_target(code)
        self._cache.put(code, target)
        if self._shared is not None:
            await self._shared.put(code, target)
        return target

    async def take_visit(self, code: str) -> bool:
        """For links with a visit limit: count this visit atomically, False if none are left."""
        return await self._repo.take_visit(code)

    async def visits(self, code: str) -> int:
        return await self._repo.count_visits(code) or 0

    async def health(self) -> dict[str, dict[str, Any]]:
        """Each dependency's state and how long it took to answer; Redis only when configured."""
        state = {"database": await _check(self._repo.ping)}
        if self._shared is not None:
            state["redis"] = await _check(self._shared.ping)
        return state

    async def stats(self) -> tuple[int, int | None]:
        """(links stored, database size in bytes if known)."""
        return await self._repo.stats()


async def _check(ping: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    start = perf_counter()
    try:
        await ping()
    except Exception as exc:
        return {"status": "unavailable", "error": type(exc).__name__,
                "latency_ms": round((perf_counter() - start) * 1000, 2)}
    return {"status": "ok", "latency_ms": round((perf_counter() - start) * 1000, 2)}
