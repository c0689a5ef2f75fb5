"""Users, API keys and the audit log over HTTP (issue 5): `/api/v1/me`, and admin routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from snip.domain.accounts import MAX_KEY_NAME_LENGTH, ApiKey, AuditEntry, User, format_scopes
from snip.domain.errors import Unauthorized
from snip.domain.links import utcnow
from snip.entrypoints.api import Problem
from snip.entrypoints.auth import CurrentActor, accounts_of
from snip.service_layer.accounts import AccountService

router = APIRouter(prefix="/api/v1", tags=["users and keys"])

Accounts = Annotated[AccountService, Depends(accounts_of)]
Scope = Literal["links:read", "links:write", "stats:read", "admin"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
UserName = Annotated[str, Path(pattern=NAME_PATTERN, description="The user's name")]
KeyId = Annotated[int, Path(ge=1, le=2**62, description="The key's id (see GET /api/v1/keys)")]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid API key"},
    403: {"model": Problem, "description": "The key is not an admin's"},
}


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN,
                      description="Letters, digits and . _ @ -; links they create carry it")
    role: Literal["admin", "user"] = "user"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "user"] | None = None
    disabled: bool | None = Field(None, description="A disabled user's keys stop working")


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(pattern=NAME_PATTERN, description="Whose key")
    scopes: list[Scope] | None = Field(
        None, min_length=1, max_length=4,
        description="Default: links:read, links:write, stats:read, and admin for an admin")
    expires_at: datetime | None = Field(None, description="After this the key stops working")
    name: str | None = Field(None, max_length=MAX_KEY_NAME_LENGTH,
                             description="A label, e.g. where the key is used")


class KeyOut(BaseModel):
    id: int
    user: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    name: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None
    state: Literal["active", "revoked", "expired"]


class NewKeyOut(KeyOut):
    key: str = Field(description="The API key itself: shown this once, stored only as a digest")


class MeOut(BaseModel):
    name: str
    role: str
    admin: bool = Field(description="True if this key may act as an admin")
    scopes: list[str]
    key: KeyOut | None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    total: int


def _user(user: User) -> UserOut:
    return UserOut(name=user.name, role=user.role, disabled=user.disabled,
                   created_at=user.created_at, updated_at=user.updated_at)


def _key_fields(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "user": key.user, "prefix": key.prefix, "name": key.name,
            "scopes": [s for s in format_scopes(key.scopes).split(",") if s],
            "created_at": key.created_at, "expires_at": key.expires_at,
            "last_used_at": key.last_used_at, "revoked_at": key.revoked_at,
            "state": key.state(utcnow())}


@router.get("/me", response_model=MeOut, responses={401: AUTH_ERRORS[401]},
            summary="Who this API key belongs to")
async def me(actor: CurrentActor, accounts: Accounts) -> MeOut:
    if actor.is_anonymous:
        raise Unauthorized("send an API key to see whose it is")
    key = await accounts.key_of(actor)
    return MeOut(name=actor.name, role=actor.role, admin=actor.is_admin,
                 scopes=[s for s in format_scopes(actor.scopes).split(",") if s],
                 key=KeyOut(**_key_fields(key)) if key else None)


@router.get("/users", response_model=list[UserOut], responses=AUTH_ERRORS,
            summary="List users (admin)")
async def list_users(actor: CurrentActor, accounts: Accounts) -> list[UserOut]:
    return [_user(u) for u in await accounts.users(actor)]


@router.post("/users", status_code=201, response_model=UserOut,
             responses={**AUTH_ERRORS, 409: {"model": Problem, "description": "Name taken"},
                        422: {"model": Problem, "description": "Invalid name"}},
             summary="Create a user (admin)")
async def create_user(body: UserIn, actor: CurrentActor, accounts: Accounts,
                      response: Response) -> UserOut:
    user, _ = await accounts.create_user(actor, body.name, body.role)
    response.headers["Location"] = f"/api/v1/users/{user.name}"
    return _user(user)


@router.get("/users/{name}", response_model=UserOut,
            responses={**AUTH_ERRORS, 404: {"model": Problem}}, summary="Read a user (admin)")
async def get_user(name: UserName, actor: CurrentActor, accounts: Accounts) -> UserOut:
    return _user(await accounts.user(actor, name))


@router.patch("/users/{name}", response_model=UserOut,
              responses={**AUTH_ERRORS, 404: {"model": Problem}, 422: {"model": Problem}},
              summary="Change a user's role, or disable them (admin)")
async def patch_user(name: UserName, body: UserPatch, actor: CurrentActor,
                     accounts: Accounts) -> UserOut:
    return _user(await accounts.change_user(actor, name, role=body.role, disabled=body.disabled))


@router.get("/keys", response_model=list[KeyOut],
            responses={**AUTH_ERRORS, 404: {"model": Problem}},
            summary="List API keys, never the keys themselves (admin)")
async def list_keys(
    actor: CurrentActor, accounts: Accounts,
    user: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this user's")] = None,
) -> list[KeyOut]:
    return [KeyOut(**_key_fields(k)) for k in await accounts.keys(actor, user)]


@router.post("/keys", status_code=201, response_model=NewKeyOut,
             responses={**AUTH_ERRORS, 404: {"model": Problem, "description": "No such user"},
                        422: {"model": Problem}},
             summary="Create an API key (admin); the key is in this answer only")
async def create_key(body: KeyIn, actor: CurrentActor, accounts: Accounts,
                     response: Response) -> NewKeyOut:
    made = await accounts.create_key(actor, body.user, scopes=body.scopes,
                                     expires_at=body.expires_at, name=body.name)
    response.headers["Cache-Control"] = "no-store"
    return NewKeyOut(**_key_fields(made.info), key=made.key)


@router.delete("/keys/{key_id}", response_model=KeyOut,
               responses={**AUTH_ERRORS, 404: {"model": Problem}},
               summary="Revoke an API key (admin); it stops working at once here, within "
                       "SNIP_AUTH_CACHE_TTL seconds in other processes")
async def revoke_key(key_id: KeyId, actor: CurrentActor, accounts: Accounts) -> KeyOut:
    return KeyOut(**_key_fields(await accounts.revoke_key(actor, key_id)))


@router.get("/audit", response_model=AuditPage, responses=AUTH_ERRORS,
            summary="The audit log, newest first (admin)")
async def audit(
    actor: CurrentActor, accounts: Accounts,
    by: Annotated[str | None, Query(max_length=64, description="Only this actor's")] = None,
    action: Annotated[str | None, Query(max_length=32,
                                        description="e.g. key.create, user.change")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    items, total = await accounts.audit_log(actor, limit=limit, offset=offset, by=by,
                                            action=action)
    return AuditPage(items=[_entry(e) for e in items], total=total)


def _entry(entry: AuditEntry) -> AuditOut:
    return AuditOut(id=entry.id, at=entry.at, actor=entry.actor, action=entry.action,
                    target=entry.target, details=entry.details)
