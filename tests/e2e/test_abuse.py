"""The blocklist and reports on a real `snip serve` with two workers and Redis, and the CLI."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Reply, Server, http, many_requests, run_cli, snip_env, sqlite_url
from tests.redis_service import redis_url

pytestmark = pytest.mark.e2e

PROMPT = 2.0  # seconds a change may take to reach every worker (the caches trust 60 s)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return snip_env(database_url=sqlite_url(tmp_path / "snip.db"), redis_url=redis_url(),
                    redis_prefix=f"snip-abuse-{secrets.token_hex(4)}:", blocklist_refresh="0.3",
                    rate_limit_create="off", rate_limit_anonymous_create="off", **extra)


def _until(expected: int, make: Callable[[], list[Reply]]) -> list[Reply]:
    """Repeat a round of requests until every reply has `expected` status (or PROMPT passes);
    the last round."""
    deadline = time.monotonic() + PROMPT
    while True:
        replies = make()
        if all(r.status == expected for r in replies) or time.monotonic() > deadline:
            return replies
        time.sleep(0.05)


def _statuses(replies: list[Reply]) -> dict[int, int]:
    found: dict[int, int] = {}
    for reply in replies:
        found[reply.status] = found.get(reply.status, 0) + 1
    return found


def test_blocking_a_domain_reaches_every_worker_and_unblocking_restores(
        tmp_path: Path, start_snip: Callable[..., Server]) -> None:
    server = start_snip(_env(tmp_path), workers=2)
    base = server.base_url
    made = http("POST", f"{base}/api/v1/links", {"url": "https://login.phish.example/x"})
    assert made.status == 201, made.body
    code = made.json()["code"]

    def redirects() -> list[Reply]:  # 40 requests over 8 connections: both workers answer
        return many_requests(40, "GET", f"{base}/{code}", in_flight=8)

    assert _statuses(redirects()) == {302: 40}  # now cached in both workers and in Redis

    blocked = http("POST", f"{base}/api/v1/blocklist", {"domains": ["phish.example"]})
    assert blocked.status == 201, blocked.body
    assert blocked.json() == {"domains": ["phish.example"], "links": 1}
    replies = _until(403, redirects)
    assert _statuses(replies) == {403: 40}
    assert b"This link has been blocked" in replies[0].body
    assert "location" not in replies[0].headers

    # Every worker refuses new links to the domain at once (the check asks the database).
    def creations() -> list[Reply]:
        return many_requests(10, "POST", f"{base}/api/v1/links",
                             {"url": "https://phish.example/again"}, in_flight=5)

    created = creations()
    assert _statuses(created) == {422: 10}
    assert created[0].json()["type"] == "/problems/blocked-url"

    assert http("DELETE", f"{base}/api/v1/blocklist/phish.example").json()["links"] == 1
    assert _statuses(_until(302, redirects)) == {302: 40}
    assert _statuses(_until(201, creations)) == {201: 10}


def test_the_cli_blocks_for_running_servers_and_resolves_reports(
        tmp_path: Path, start_snip: Callable[..., Server]) -> None:
    env = _env(tmp_path)
    server = start_snip(env, workers=2)
    base = server.base_url
    code = http("POST", f"{base}/api/v1/links", {"url": "https://kit.example/a"}).json()["code"]
    other = http("POST", f"{base}/api/v1/links", {"url": "https://fine.example/"}).json()["code"]
    assert _statuses(many_requests(20, "GET", f"{base}/{code}", in_flight=4)) == {302: 20}

    listing = tmp_path / "feed.txt"
    listing.write_text("# today's feed\nkit.example\nother-kit.example # new\n", encoding="utf-8")
    done = run_cli("blocklist", "import", str(listing), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "blocked 2 domains, 1 links"
    assert _statuses(_until(403, lambda: many_requests(20, "GET", f"{base}/{code}",
                                                        in_flight=4))) == {403: 20}
    listed = run_cli("blocklist", "list", "--json", env=env, cwd=tmp_path)
    assert [(d["domain"], d["links"]) for d in json.loads(listed.stdout)] == [
        ("kit.example", 1), ("other-kit.example", 0)]
    bad = run_cli("blocklist", "add", "not a domain", env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "not a domain" in bad.stderr
    done = run_cli("blocklist", "remove", "kit.example", "other-kit.example", env=env,
                   cwd=tmp_path)
    assert done.stdout.strip() == "unblocked 2 domains, 1 links"
    assert _statuses(_until(302, lambda: many_requests(20, "GET", f"{base}/{code}",
                                                        in_flight=4))) == {302: 20}

    # Anyone reports (no key); the operator resolves from the CLI.
    reply = http("POST", f"{base}/api/v1/reports",
                 {"link": f"{base}/{other}", "reason": "spam"}, key=None)
    assert reply.status == 202
    reports = run_cli("reports", "list", "--json", env=env, cwd=tmp_path)
    items = json.loads(reports.stdout)["items"]
    assert [(r["code"], r["reason"], r["url"]) for r in items] == [
        (other, "spam", "https://fine.example/")]
    done = run_cli("reports", "resolve", str(items[0]["id"]), "--action", "disable", env=env,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _statuses(_until(410, lambda: many_requests(10, "GET", f"{base}/{other}",
                                                        in_flight=4))) == {410: 10}
    assert json.loads(run_cli("reports", "list", "--json", env=env, cwd=tmp_path).stdout
                      )["total"] == 0
