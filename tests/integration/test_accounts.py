"""Users, API keys and who may do what to which link: the whole permission matrix, on SQLite and
PostgreSQL, through the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, update

from snip.adapters.sql.accounts import SqlAccountRepository
from snip.adapters.sql.engine import make_engine
from snip.adapters.sql.schema import api_keys, users
from snip.bootstrap import Snip, create_app
from snip.config import Settings
from snip.domain.accounts import Actor
from snip.service_layer.accounts import AccountService
from snip.service_layer.links import NewLink
from tests.conftest import BASE_URL, UserClient

SYSTEM = Actor.system()
OWNERS = ("alice", "bob", "-")  # whose link an actor tries to use; "-": made anonymously
ACTORS = ("admin", "alice", "bob", "anonymous", "alice-read-only", "alice-write-only",
          "admin-without-admin-scope", "revoked", "expired")
OPERATIONS = ("create", "read", "list", "patch", "delete")


def expected(actor: str, op: str, owner: str) -> int:
    """What each actor must get for each operation on a link owned by `owner`."""
    if actor in ("revoked", "expired"):
        return 401  # a bad key is an error, never silently anonymous
    if actor == "anonymous":
        return 201 if op == "create" else 401
    if actor == "alice-read-only" and op in ("create", "patch", "delete"):
        return 403
    if actor == "alice-write-only" and op in ("read", "list"):
        return 403
    if op == "create":
        return 201
    if op == "list":
        return 200
    name = actor.split("-")[0]
    sees = actor == "admin" or owner == name
    if not sees:
        return 404  # another user's link does not exist for you
    return {"read": 200, "patch": 200, "delete": 204}[op]


async def _link(snip: Snip, owner: str) -> str:
    actor = Actor.anonymous() if owner == "-" else Actor(owner, "user", frozenset())
    made = await snip.links.create(NewLink(url=f"https://example.com/{owner}"), actor)
    return made.link.code


async def _expire(snip: Snip, key_id: int) -> None:
    async with snip.engine.begin() as conn:
        await conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


@pytest.fixture
async def actors(snip: Snip, client: httpx.AsyncClient, anon_client: httpx.AsyncClient,
                 user_client: UserClient) -> dict[str, httpx.AsyncClient]:
    assert snip.accounts is not None
    made = {
        "admin": client,
        "alice": await user_client("alice"),
        "bob": await user_client("bob"),
        "anonymous": anon_client,
        "alice-read-only": await user_client("alice", scopes="links:read"),
        "alice-write-only": await user_client("alice", scopes="links:write"),
        "admin-without-admin-scope": await user_client("root", role="admin",
                                                       scopes="links:read,links:write"),
        "revoked": await user_client("alice"),
        "expired": await user_client("alice"),
    }
    assert (await made["revoked"].get("/api/v1/links")).status_code == 200
    await snip.accounts.revoke_key(SYSTEM, made["revoked"].key_id)  # type: ignore[attr-defined]
    await _expire(snip, made["expired"].key_id)  # type: ignore[attr-defined]
    return made


async def test_the_whole_permission_matrix(snip: Snip, actors: dict[str, httpx.AsyncClient]
                                           ) -> None:
    wrong: list[str] = []
    for actor in ACTORS:
        http = actors[actor]
        for op in OPERATIONS:
            for owner in OWNERS:
                if op in ("create", "list") and owner != "-":
                    continue  # not about an existing link: once per actor is enough
                code = await _link(snip, owner)
                if op == "create":
                    r = await http.post("/api/v1/links", json={"url": "https://example.com/new"})
                elif op == "read":
                    r = await http.get(f"/api/v1/links/{code}")
                elif op == "list":
                    r = await http.get("/api/v1/links", params={"per_page": 1000})
                elif op == "patch":
                    r = await http.patch(f"/api/v1/links/{code}", json={"title": "changed"})
                else:
                    r = await http.delete(f"/api/v1/links/{code}")
                want = expected(actor, op, owner)
                if r.status_code != want:
                    wrong.append(f"{actor} {op} {owner}'s link: {r.status_code}, not {want}")
                    continue
                if want >= 400:
                    assert r.headers["content-type"] == "application/problem+json"
                if want == 401:
                    assert r.headers["www-authenticate"].startswith("Bearer")
                if want == 404:
                    assert r.json()["detail"] == f"no link has the code '{code}'"  # as if absent
                if op in ("patch", "delete") and want >= 400:
                    still = await snip.links.get(code)  # nothing changed behind the refusal
                    assert still.title is None
                if op == "create" and want == 201:
                    made = await snip.links.get(r.json()["code"])
                    owner_name = "-" if actor == "anonymous" else \
                        "root" if actor.startswith("admin-") else actor.split("-")[0]
                    assert made.owner == owner_name, (actor, made.owner)
    assert not wrong, "\n".join(wrong)


async def test_users_list_only_their_own_links_and_admins_all(
    snip: Snip, actors: dict[str, httpx.AsyncClient]
) -> None:
    mine = {await _link(snip, "alice") for _ in range(3)}
    theirs = {await _link(snip, "bob") for _ in range(2)}
    anonymous = {await _link(snip, "-")}

    def codes(reply: httpx.Response) -> set[str]:
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["total"] == len(body["items"])
        return {item["code"] for item in body["items"]}

    assert codes(await actors["alice"].get("/api/v1/links")) == mine
    assert codes(await actors["bob"].get("/api/v1/links")) == theirs
    assert codes(await actors["admin"].get("/api/v1/links")) == mine | theirs | anonymous
    assert codes(await actors["admin"].get("/api/v1/links", params={"owner": "bob"})) == theirs
    # A user asking for someone else's links still gets only their own.
    assert codes(await actors["alice"].get("/api/v1/links", params={"owner": "bob"})) == mine


async def test_reuse_is_per_owner(actors: dict[str, httpx.AsyncClient]) -> None:
    body = {"url": "https://example.com/shared", "reuse": True}
    a1 = (await actors["alice"].post("/api/v1/links", json=body)).json()
    a2 = await actors["alice"].post("/api/v1/links", json=body)
    b1 = (await actors["bob"].post("/api/v1/links", json=body)).json()
    assert a2.status_code == 200 and a2.json()["code"] == a1["code"]
    assert b1["code"] != a1["code"]  # bob never gets alice's link


async def test_a_key_works_in_either_header_and_a_bad_one_is_never_anonymous(
    anon_client: httpx.AsyncClient, user_client: UserClient
) -> None:
    alice = await user_client("alice")
    key = alice.key  # type: ignore[attr-defined]
    for headers in ({"Authorization": f"Bearer {key}"}, {"authorization": f"bearer {key}"},
                    {"X-Api-Key": key}, {"X-Api-Key": key, "Authorization": f"Bearer {key}"}):
        reply = await anon_client.get("/api/v1/me", headers=headers)
        assert reply.status_code == 200, (headers, reply.text)
        assert reply.json()["name"] == "alice"
    bad = [{"Authorization": f"Basic {key}"}, {"Authorization": "Bearer"},
           {"Authorization": "Bearer snip_not-a-real-key"}, {"X-Api-Key": ""},
           {"X-Api-Key": "x" * 5000}, {"X-Api-Key": key, "Authorization": "Bearer other"},
           {"X-Api-Key": key[:-1]}, {"X-Api-Key": "snip_ 'or 1=1 --"}]
    for headers in bad:
        # Even on a route anonymous callers may use, a bad key is refused.
        reply = await anon_client.post("/api/v1/links", json={"url": "https://example.com/"},
                                       headers=headers)
        assert reply.status_code == 401, (headers, reply.text)
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["www-authenticate"] == 'Bearer realm="snip"'
        assert key not in reply.text


async def test_keys_are_stored_only_as_sha256_digests(snip: Snip, user_client: UserClient
                                                      ) -> None:
    alice = await user_client("alice")
    key: str = alice.key  # type: ignore[attr-defined]
    assert key.startswith("snip_") and len(key) >= 5 + 43  # 256 random bits, url-safe base64
    async with snip.engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == alice.key_id))  # type: ignore[attr-defined]
               ).mappings().one()
    assert row["digest"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["prefix"] == key[:12]
    assert all(key not in str(value) for value in row.values())


async def test_revocation_takes_effect_at_once_in_this_process(
    client: httpx.AsyncClient, user_client: UserClient
) -> None:
    alice = await user_client("alice")
    assert (await alice.get("/api/v1/links")).status_code == 200  # now cached
    listed = (await client.get("/api/v1/keys", params={"user": "alice"})).json()
    assert [k["state"] for k in listed] == ["active"]
    assert all("key" not in k for k in listed)
    revoked = await client.delete(f"/api/v1/keys/{listed[0]['id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert (await alice.get("/api/v1/links")).status_code == 401
    assert (await client.delete("/api/v1/keys/999999")).status_code == 404


async def test_a_disabled_users_keys_stop_working(client: httpx.AsyncClient,
                                                  user_client: UserClient) -> None:
    alice = await user_client("alice")
    assert (await alice.get("/api/v1/me")).status_code == 200
    changed = await client.patch("/api/v1/users/alice", json={"disabled": True})
    assert changed.status_code == 200 and changed.json()["disabled"] is True
    assert (await alice.get("/api/v1/me")).status_code == 401
    await client.patch("/api/v1/users/alice", json={"disabled": False})
    assert (await alice.get("/api/v1/me")).status_code == 200


async def test_admins_manage_users_and_keys_over_http(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient, user_client: UserClient
) -> None:
    made = await client.post("/api/v1/users", json={"name": "carol"})
    assert made.status_code == 201 and made.json()["role"] == "user"
    assert (await client.post("/api/v1/users", json={"name": "carol"})).status_code == 409
    assert (await client.post("/api/v1/users", json={"name": "-x"})).status_code == 422
    assert (await client.post("/api/v1/users", json={"name": "system"})).status_code == 422
    assert (await client.post("/api/v1/keys", json={"user": "carol", "scopes": ["admin"]})
            ).status_code == 422  # the admin scope is for admins only
    assert (await client.post("/api/v1/keys", json={"user": "nobody"})).status_code == 404
    key = await client.post("/api/v1/keys", json={"user": "carol", "scopes": ["links:read"],
                                                  "name": "ci"})
    assert key.status_code == 201 and key.headers["cache-control"] == "no-store"
    body = key.json()
    assert body["scopes"] == ["links:read"] and body["key"].startswith(body["prefix"])
    carol = await anon_client.get("/api/v1/me", headers={"X-Api-Key": body["key"]})
    assert carol.json() == {"name": "carol", "role": "user", "admin": False,
                            "scopes": ["links:read"], "key": carol.json()["key"]}
    assert carol.json()["key"]["last_used_at"] is not None
    # Only admins manage accounts: a user's key is 403, no key 401.
    alice = await user_client("alice")
    for method, path in (("GET", "/api/v1/users"), ("POST", "/api/v1/users"),
                         ("GET", "/api/v1/keys"), ("GET", "/api/v1/audit"),
                         ("PATCH", "/api/v1/users/carol"), ("DELETE", "/api/v1/keys/1")):
        kwargs: dict[str, Any] = {"json": {"name": "zed"}} if method in ("POST", "PATCH") else {}
        if method == "PATCH":
            kwargs = {"json": {"role": "admin"}}
        assert (await alice.request(method, path, **kwargs)).status_code == 403, path
        assert (await anon_client.request(method, path, **kwargs)).status_code == 401, path
    # An admin cannot lock themselves out.
    assert (await client.patch("/api/v1/users/admin", json={"disabled": True})).status_code == 422


async def test_the_audit_log_records_keys_users_and_admins_changes_to_others_links(
    snip: Snip, client: httpx.AsyncClient, user_client: UserClient
) -> None:
    alice = await user_client("alice")
    code = (await alice.post("/api/v1/links", json={"url": "https://example.com/a"})).json()["code"]
    own = (await client.post("/api/v1/links", json={"url": "https://example.com/b"})).json()["code"]
    await alice.patch(f"/api/v1/links/{code}", json={"title": "by alice"})  # her own: no entry
    await client.patch(f"/api/v1/links/{code}", json={"title": "by admin"})
    await client.patch(f"/api/v1/links/{own}", json={"title": "mine"})  # own: no entry
    await client.delete(f"/api/v1/links/{code}")
    await client.patch("/api/v1/users/alice", json={"role": "admin"})
    await client.delete(f"/api/v1/keys/{alice.key_id}")  # type: ignore[attr-defined]
    log = (await client.get("/api/v1/audit", params={"limit": 100})).json()
    seen = [(e["actor"], e["action"], e["target"]) for e in reversed(log["items"])]
    assert seen == [
        ("system", "user.create", "admin"),
        ("system", "user.create", "alice"),
        ("system", "key.create", "alice"),
        ("admin", "link.update", code),
        ("admin", "link.delete", code),
        ("admin", "user.change", "alice"),
        ("admin", "key.revoke", "alice"),
    ], seen
    entries = {e["action"]: e for e in log["items"]}
    assert entries["link.update"]["details"] == {"owner": "alice", "fields": ["title"]}
    assert entries["user.change"]["details"] == {"role": "admin", "before": {"role": "user"}}
    assert entries["key.revoke"]["details"]["prefix"] == alice.key[:12]  # type: ignore[attr-defined]
    only = (await client.get("/api/v1/audit", params={"action": "key.revoke"})).json()
    assert only["total"] == 1


async def test_last_used_at_is_written_at_most_once_a_minute(
    snip: Snip, user_client: UserClient
) -> None:
    alice = await user_client("alice")

    async def last_used() -> datetime | None:
        async with snip.engine.connect() as conn:
            return await conn.scalar(select(api_keys.c.last_used_at)
                                     .where(api_keys.c.id == alice.key_id))  # type: ignore[attr-defined]

    assert await last_used() is None
    await alice.get("/api/v1/me")
    first = await last_used()
    assert first is not None
    assert snip.accounts is not None
    snip.accounts.forget()  # even without the lookup cache, no second write within a minute
    for _ in range(5):
        assert (await alice.get("/api/v1/me")).status_code == 200
    assert await last_used() == first


# -- anonymous creation off --------------------------------------------------------------------


@pytest.fixture
async def closed_app(settings: Settings) -> AsyncIterator[Any]:
    app = create_app(settings.model_copy(update={"anonymous_create": False}))
    async with LifespanManager(app):  # type: ignore[arg-type]
        yield app


async def test_with_anonymous_creation_off_only_keys_create(closed_app: Any) -> None:
    accounts = closed_app.state.snip.accounts
    _, made = await accounts.create_user(SYSTEM, "alice", with_key=True)
    transport = httpx.ASGITransport(app=closed_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as anon:
        api = await anon.post("/api/v1/links", json={"url": "https://example.com/x"})
        assert api.status_code == 401 and "anonymous creation" in api.json()["detail"]
        legacy = await anon.post("/shorten", json={"url": "https://example.com/x"})
        assert legacy.status_code == 401
        assert legacy.headers["content-type"] == "application/problem+json"
        form = await anon.post("/", data={"url": "https://example.com/x"},
                               headers={"Accept": "text/html"})
        assert form.status_code == 401 and form.headers["content-type"].startswith("text/html")
        assert "API key" in form.text
        keyed = await anon.post("/api/v1/links", json={"url": "https://example.com/x"},
                                headers={"X-Api-Key": made.key})
        assert keyed.status_code == 201
        code = keyed.json()["code"]
        # Following and previewing links stays public.
        assert (await anon.get(f"/{code}")).status_code == 302
        assert (await anon.get(f"/r/{code}")).status_code == 302
        assert (await anon.get(f"/{code}+")).status_code == 200


async def test_with_anonymous_creation_on_anyone_creates_but_nobody_anonymous_reads(
    anon_client: httpx.AsyncClient, snip: Snip
) -> None:
    made = await anon_client.post("/shorten", json={"url": "https://example.com/anon"})
    assert made.status_code == 201
    code = made.json()["code"]
    assert (await snip.links.get(code)).owner == "-"
    assert (await anon_client.get(f"/api/v1/links/{code}")).status_code == 401
    assert (await anon_client.get(f"/{code}")).status_code == 302
    form = await anon_client.post("/", data={"url": "https://example.com/form"})
    assert form.status_code == 201


# -- the first admin -------------------------------------------------------------------------


async def test_the_first_admin_is_made_exactly_once_by_concurrent_starts(
    services: Snip, settings: Settings
) -> None:
    engines = [make_engine(settings.database_url, pool_size=1) for _ in range(6)]
    try:
        results = await asyncio.gather(*(
            AccountService(SqlAccountRepository(engine)).bootstrap() for engine in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    made = [r for r in results if r is not None]
    assert len(made) == 1, results
    assert made[0].user.name == "admin" and made[0].key is not None
    assert services.accounts is not None
    actor = await services.accounts.authenticate(made[0].key)
    assert actor.is_admin and actor.name == "admin"
    async with services.engine.connect() as conn:
        assert await conn.scalar(select(users.c.id).where(users.c.name != "admin")) is None
        assert len((await conn.execute(select(api_keys.c.id))).all()) == 1
    # Later starts do nothing, with or without a key of their own to give.
    assert await services.accounts.bootstrap() is None
    assert await services.accounts.bootstrap("snip_" + "k" * 40) is None


async def test_a_given_first_key_becomes_the_admins(services: Snip) -> None:
    assert services.accounts is not None
    given = "snip_" + "g" * 40
    made = await services.accounts.bootstrap(given)
    assert made is not None and made.key is None  # not printed: the operator knows it
    assert (await services.accounts.authenticate(given)).is_admin


async def test_a_demoted_admins_old_key_loses_admin_powers(
    client: httpx.AsyncClient, user_client: UserClient
) -> None:
    root = await user_client("root", role="admin")
    assert (await root.get("/api/v1/users")).status_code == 200
    await client.patch("/api/v1/users/root", json={"role": "user"})
    me = (await root.get("/api/v1/me")).json()
    assert me["admin"] is False and "admin" not in me["scopes"]
    assert (await root.get("/api/v1/users")).status_code == 403
    code = (await client.post("/api/v1/links", json={"url": "https://example.com/x"})).json()
    assert (await root.get(f"/api/v1/links/{code['code']}")).status_code == 404
