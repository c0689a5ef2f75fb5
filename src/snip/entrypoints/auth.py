"""Who is calling the API: the `Actor` behind a request's API key (or anonymous).

A key comes as `Authorization: Bearer KEY` or `X-Api-Key: KEY`. No key at all is anonymous;
a key that is malformed, unknown, revoked, expired or of a disabled user is a 401, never
anonymous. FastAPI dependencies: `CurrentActor` for any route, `require(scope)` for routes
that need one, `Reader`/`Writer` for the link scopes, `Creator` for routes that create links
(anonymous callers too, while SNIP_ANONYMOUS_CREATE is on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from snip.domain.accounts import LINKS_READ, LINKS_WRITE, Actor
from snip.domain.errors import Forbidden, Unauthorized
from snip.service_layer.accounts import AccountService

# Declared for the OpenAPI document (the "Authorize" button of /docs); the key itself is read
# from the headers below, so that a wrong scheme is an error and not an anonymous request.
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="An API key: `Authorization: Bearer snip_…`")
_header = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="apiKey",
                       description="An API key: `X-Api-Key: snip_…`")


def key_in(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries, None if it carries none; Unauthorized if it is garbled."""
    authorization = headers.get("authorization")
    header = headers.get("x-api-key")
    key = None
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send the API key as 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'")
        key = token.strip()
    if header is not None:
        if not header.strip() or (key is not None and header.strip() != key):
            raise Unauthorized("the X-Api-Key header is empty or differs from the bearer token")
        key = header.strip()
    return key


def accounts_of(request: Request) -> AccountService:
    accounts: AccountService | None = request.app.state.snip.accounts
    if accounts is None:  # pragma: no cover (bootstrap always wires it)
        raise RuntimeError("no account service is wired")
    return accounts


async def current_actor(
    request: Request,
    _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _header_key: Annotated[str | None, Depends(_header)],
) -> Actor:
    """The actor for this request: the key's user with its scopes, or anonymous without a key."""
    return await actor_of(request)


async def actor_of(request: Request) -> Actor:
    """`current_actor` without FastAPI's dependency machinery (for pages and raw ASGI routes)."""
    key = key_in(request.headers)
    if key is None:
        return Actor.anonymous()
    actor = await accounts_of(request).authenticate(key)
    request.state.actor = actor  # for whoever logs or limits by key
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(scope: str) -> Callable[[Actor], Actor]:
    """A dependency that lets only actors holding `scope` through (401 if anonymous, else 403)."""

    def check(actor: CurrentActor) -> Actor:
        if actor.can(scope):
            return actor
        if actor.is_anonymous:
            raise Unauthorized(f"this needs an API key with the '{scope}' scope")
        raise Forbidden(f"this key lacks the '{scope}' scope")

    return check


def anonymous_create_allowed(request: Request) -> bool:
    return bool(request.app.state.snip.settings.anonymous_create)


async def creator(request: Request, actor: CurrentActor) -> Actor:
    """Who may create a link: a key with links:write, or anyone while anonymous creation is on."""
    if actor.is_anonymous:
        if anonymous_create_allowed(request):
            return actor
        raise Unauthorized("creating links needs an API key with the 'links:write' scope "
                           "(anonymous creation is turned off here)")
    if actor.can(LINKS_WRITE):
        return actor
    raise Forbidden(f"this key lacks the '{LINKS_WRITE}' scope")


Reader = Annotated[Actor, Depends(require(LINKS_READ))]
Writer = Annotated[Actor, Depends(require(LINKS_WRITE))]
Creator = Annotated[Actor, Depends(creator)]
