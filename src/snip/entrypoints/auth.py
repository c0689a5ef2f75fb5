"""Who is calling the API: the `Actor` behind a request's API key (or anonymous).

FastAPI dependencies: `CurrentActor` for any route, `require(scope)` for routes that need one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from snip.domain.accounts import Actor
from snip.domain.errors import Forbidden, Unauthorized


async def current_actor(request: Request) -> Actor:
    """The actor for this request. (Placeholder until API keys exist: everyone is the system.)"""
    return Actor.system()


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
