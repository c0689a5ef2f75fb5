"""`snip users`, `snip keys`, `snip audit`, and the first admin at the first `snip serve` (issue 5).

The CLI acts as the system (it has the database, so it may do everything); what it changes is
audited under the name `system`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import datetime
from typing import Any

import click

from snip.bootstrap import Snip
from snip.config import Settings
from snip.domain.accounts import (
    Actor,
    ApiKey,
    InvalidAccount,
    User,
    format_scopes,
    parse_expiry,
    validate_given_key,
)
from snip.domain.links import utcnow
from snip.entrypoints.cli_common import run
from snip.service_layer.accounts import AccountService, Bootstrap

log = logging.getLogger(__name__)
SYSTEM = Actor.system()



def _accounts(snip: Snip) -> AccountService:
    if snip.accounts is None:  # pragma: no cover - bootstrap always builds it
        raise click.ClickException("the account service is not wired")
    return snip.accounts


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def _user_dict(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "disabled": user.disabled,
            "created_at": user.created_at.isoformat(), "updated_at": user.updated_at.isoformat()}


def _key_dict(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "user": key.user, "prefix": key.prefix, "name": key.name,
            "scopes": format_scopes(key.scopes), "state": key.state(utcnow()),
            "created_at": key.created_at.isoformat(),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


def _show_key(key: str) -> None:
    """The key alone on the last line of stdout: `KEY=$(snip keys create ... | tail -1)`."""
    sys.stderr.flush()
    click.echo(key)


# -- users ---------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Users: admins see and change every link, users only their own."""


@users.command(name="create")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "admin"]), default="user", show_default=True)
@click.option("--with-key", is_flag=True,
              help="Also make an API key with the role's default scopes; printed on the last line")
def users_create(name: str, role: str, with_key: bool) -> None:
    """Create the user NAME."""

    async def use(snip: Snip) -> tuple[User, str | None]:
        user, key = await _accounts(snip).create_user(SYSTEM, name, role, with_key=with_key)
        return user, key.key if key else None

    user, key = run(use)
    click.echo(f"created {user.role} '{user.name}'", err=True)
    if key is not None:
        click.echo("its API key (shown only this once; store it now):", err=True)
        _show_key(key)


@users.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def users_list(as_json: bool) -> None:
    """List users."""

    async def use(snip: Snip) -> list[User]:
        return await _accounts(snip).users(SYSTEM)

    found = run(use)
    if as_json:
        click.echo(json.dumps([_user_dict(u) for u in found], indent=2))
        return
    for user in found:
        click.echo(f"{user.name}\t{user.role}\t{'disabled' if user.disabled else 'active'}")
    click.echo(f"{len(found)} users", err=True)


@users.command(name="update")
@click.argument("name")
@click.option("--role", type=click.Choice(["user", "admin"]), default=None)
@click.option("--disable/--enable", "disabled", default=None,
              help="A disabled user's keys stop working (within SNIP_AUTH_CACHE_TTL seconds)")
def users_update(name: str, role: str | None, disabled: bool | None) -> None:
    """Change NAME's role, or disable or enable them."""

    async def use(snip: Snip) -> User:
        return await _accounts(snip).change_user(SYSTEM, name, role=role, disabled=disabled)

    user = run(use)
    click.echo(f"{user.name}\t{user.role}\t{'disabled' if user.disabled else 'active'}")


# -- keys ----------------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """API keys: shown once when made, stored only as a SHA-256 digest."""


@keys.command(name="create")
@click.option("--user", "user", required=True, help="Whose key")
@click.option("--scopes", default=None, metavar="LIST",
              help="Comma-separated: links:read,links:write,stats:read,admin (default: the "
                   "role's; admin only for admins)")
@click.option("--expires", default=None, metavar="WHEN",
              help="30d, 12h, 2w, 1y from now, or an ISO date/time (UTC); default: never")
@click.option("--name", default=None, help="A label, e.g. where the key is used")
def keys_create(user: str, scopes: str | None, expires: str | None, name: str | None) -> None:
    """Make an API key for USER; the key is printed alone on the last line."""
    try:
        expires_at = parse_expiry(expires, utcnow())
    except InvalidAccount as exc:
        raise click.BadParameter(exc.detail, param_hint="--expires") from None

    async def use(snip: Snip) -> tuple[str, ApiKey]:
        made = await _accounts(snip).create_key(SYSTEM, user, scopes=scopes,
                                                expires_at=expires_at, name=name)
        return made.key, made.info

    key, info = run(use)
    click.echo(f"created key {info.id} ({info.prefix}…) for '{info.user}', scopes "
               f"{format_scopes(info.scopes)}, expires {_when(info.expires_at)}", err=True)
    click.echo("the key (shown only this once; store it now):", err=True)
    _show_key(key)


@keys.command(name="list")
@click.option("--user", "user", default=None, help="Only this user's keys")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def keys_list(user: str | None, as_json: bool) -> None:
    """List keys: id, prefix, user, scopes, state, expiry, last use. Never the keys."""

    async def use(snip: Snip) -> list[ApiKey]:
        return await _accounts(snip).keys(SYSTEM, user)

    found = run(use)
    if as_json:
        click.echo(json.dumps([_key_dict(k) for k in found], indent=2))
        return
    click.echo("id\tprefix\tuser\tscopes\tstate\texpires\tlast_used\tname")
    for key in found:
        click.echo(f"{key.id}\t{key.prefix}\t{key.user}\t{format_scopes(key.scopes)}\t"
                   f"{key.state(utcnow())}\t{_when(key.expires_at)}\t{_when(key.last_used_at)}\t"
                   f"{key.name or ''}")


@keys.command(name="revoke")
@click.argument("key_id", type=click.IntRange(1))
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID (see `snip keys list`). Running servers stop accepting it within
    SNIP_AUTH_CACHE_TTL seconds."""

    async def use(snip: Snip) -> ApiKey:
        return await _accounts(snip).revoke_key(SYSTEM, key_id)

    key = run(use)
    click.echo(f"revoked key {key.id} ({key.prefix}…) of '{key.user}'")


# -- audit ---------------------------------------------------------------------------------------


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--by", default=None, help="Only this actor's entries")
@click.option("--action", default=None, help="Only this action, e.g. key.revoke")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def audit(limit: int, by: str | None, action: str | None, as_json: bool) -> None:
    """The audit log, newest first: keys made and revoked, user changes, admins' link changes."""

    async def use(snip: Snip) -> list[dict[str, Any]]:
        entries, _ = await _accounts(snip).audit_log(SYSTEM, limit=limit, by=by, action=action)
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                 "target": e.target, "details": e.details} for e in entries]

    entries = run(use)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        click.echo(f"{e['at']}\t{e['actor']}\t{e['action']}\t{e['target']}\t"
                   f"{json.dumps(e['details'], sort_keys=True)}")


def register(main: click.Group) -> None:
    for command in (users, keys, audit):
        main.add_command(command)


# -- the first start -----------------------------------------------------------------------------


def first_start(settings: Settings) -> Bootstrap | None:
    """At `snip serve`: on a database without users, make the admin and print its key once.

    Runs in the parent process before the workers start; concurrent starts on several hosts
    are safe (the database lets exactly one make the admin).
    """
    from snip.adapters.sql.accounts import SqlAccountRepository
    from snip.adapters.sql.engine import make_engine

    given = None
    if settings.initial_api_key:
        try:
            given = validate_given_key(settings.initial_api_key)
        except InvalidAccount as exc:
            raise click.ClickException(f"SNIP_INITIAL_API_KEY: {exc.detail}") from None

    async def go() -> Bootstrap | None:
        engine = make_engine(settings.database_url, pool_size=1,
                             connect_timeout=settings.db_connect_timeout,
                             statement_timeout=settings.db_statement_timeout)
        try:
            return await AccountService(SqlAccountRepository(engine)).bootstrap(given)
        finally:
            await engine.dispose()

    try:
        made = asyncio.run(go())
    except Exception as exc:
        log.warning("could not check for a first admin: %s: %s", type(exc).__name__, exc)
        return None
    if made is None:
        return None
    if made.key is None:
        log.warning("first start: created the admin user '%s' with the key in "
                    "SNIP_INITIAL_API_KEY", made.user.name)
        return made
    log.warning("first start: created the admin user '%s'; its API key is printed once on "
                "stderr", made.user.name)
    sys.stderr.write(
        f"\n*** snip: first start. Created the admin user '{made.user.name}'.\n"
        "*** Its API key, shown only this once (store it now; it is kept only as a digest):\n\n"
        f"{made.key}\n\n"
        "*** Use it as 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'. Make more users and "
        "keys with\n*** `snip users create NAME [--role admin]` and `snip keys create --user "
        "NAME`.\n\n")
    sys.stderr.flush()
    return made
