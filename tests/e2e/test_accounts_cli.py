"""Users and keys from the command line, and the first admin of a real `snip serve`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Server, http, run_cli, snip_env, sqlite_url

pytestmark = pytest.mark.e2e

KEY = re.compile(r"snip_[A-Za-z0-9_-]{43}")


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.returncode == 0, f"snip {args} exited {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout, done.stderr


def test_first_start_prints_the_admins_key_once_and_it_works(
    tmp_path: Path, start_snip: Callable[..., Server]
) -> None:
    env = snip_env(database_url=sqlite_url(tmp_path / "snip.db"), initial_api_key=None,
                   auth_cache_ttl="0")
    first = start_snip(env)
    keys = KEY.findall(first.log())
    assert len(keys) == 1, first.log()
    assert "snip users create" in first.log() and "snip keys create" in first.log()
    me = http("GET", f"{first.base_url}/api/v1/me", key=keys[0])
    assert me.status == 200 and me.json()["name"] == "admin" and me.json()["admin"] is True
    assert http("GET", f"{first.base_url}/api/v1/links", key=None).status == 401
    first.assert_stopped_cleanly()

    second = start_snip(env)  # a restart makes no second admin and prints no key
    assert KEY.findall(second.log()) == []
    listed = json.loads(cli(tmp_path, env, "users", "list", "--json")[0])
    assert [u["name"] for u in listed] == ["admin"]

    # The CLI makes users and keys; the key is alone on the last line of stdout.
    cli(tmp_path, env, "users", "create", "bob")
    out, err = cli(tmp_path, env, "keys", "create", "--user", "bob", "--expires", "30d",
                   "--name", "laptop")
    bob_key = out.splitlines()[-1]
    assert KEY.fullmatch(bob_key) and out == bob_key + "\n", out
    assert "shown only this once" in err
    made = http("POST", f"{second.base_url}/api/v1/links", {"url": "https://example.com/bob"},
                key=bob_key)
    assert made.status == 201
    code = made.json()["code"]
    assert http("GET", f"{second.base_url}/api/v1/links/{code}", key=bob_key).status == 200
    assert http("GET", f"{second.base_url}/api/v1/links/{code}", key=keys[0]).status == 200

    listing, _ = cli(tmp_path, env, "keys", "list", "--user", "bob")
    assert bob_key not in listing and bob_key[:12] in listing
    key_id = json.loads(cli(tmp_path, env, "keys", "list", "--user", "bob", "--json")[0])[0]["id"]
    cli(tmp_path, env, "keys", "revoke", str(key_id))
    # The server was given SNIP_AUTH_CACHE_TTL=0: it sees the revocation on the next request.
    assert http("GET", f"{second.base_url}/api/v1/links/{code}", key=bob_key).status == 401
    audit = json.loads(cli(tmp_path, env, "audit", "--json")[0])
    assert [e["action"] for e in audit][:3] == ["key.revoke", "key.create", "user.create"]


def test_users_create_with_key_on_an_empty_database(tmp_path: Path) -> None:
    env = snip_env(database_url=sqlite_url(tmp_path / "snip.db"))
    out, err = cli(tmp_path, env, "users", "create", "ops", "--role", "admin", "--with-key")
    assert KEY.fullmatch(out.splitlines()[-1]), out
    assert "created admin 'ops'" in err
    bad = run_cli("keys", "create", "--user", "ops", "--expires", "yesterday", env=env,
                  cwd=tmp_path)
    assert bad.returncode == 2 and "--expires" in bad.stderr
    scoped = run_cli("users", "create", "eve", env=env, cwd=tmp_path)
    assert scoped.returncode == 0
    refused = run_cli("keys", "create", "--user", "eve", "--scopes", "links:read,admin", env=env,
                      cwd=tmp_path)
    assert refused.returncode == 1 and "only an admin" in refused.stderr
    assert KEY.search(refused.stdout) is None


def test_revocation_reaches_a_running_server_within_the_cache_ttl(
    tmp_path: Path, start_snip: Callable[..., Server]
) -> None:
    env = snip_env(database_url=sqlite_url(tmp_path / "snip.db"), auth_cache_ttl="1")
    server = start_snip(env, workers=2)
    cli(tmp_path, env, "users", "create", "bob")
    key = cli(tmp_path, env, "keys", "create", "--user", "bob")[0].splitlines()[-1]
    for _ in range(4):  # both workers have it cached
        assert http("GET", f"{server.base_url}/api/v1/me", key=key).status == 200
    key_id = json.loads(cli(tmp_path, env, "keys", "list", "--json")[0])[-1]["id"]
    cli(tmp_path, env, "keys", "revoke", str(key_id))
    revoked_at = time.monotonic()
    while http("GET", f"{server.base_url}/api/v1/me", key=key).status == 200:
        assert time.monotonic() - revoked_at < 1.5, "a revoked key still works after the TTL"
        time.sleep(0.05)
    for _ in range(4):
        assert http("GET", f"{server.base_url}/api/v1/me", key=key).status == 401
