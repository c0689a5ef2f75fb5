"""The `snip` command line as a user runs it: a subprocess on a temporary database."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from snip.config import Settings
from tests.helpers import free_port, run_cli, snip_env, sqlite_url

pytestmark = pytest.mark.e2e

BASE = "http://snip.test"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The same database and base URL as the `settings` fixture, so `client` sees CLI links."""
    return snip_env(database_url=sqlite_url(tmp_path / "snip.db"), base_url=BASE)


def snip(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    """Run the CLI, expect success, return stdout."""
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.returncode == 0, f"snip {args} exited {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def snip_fails(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    """Run the CLI, expect a clean failure (no traceback), return stderr."""
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.returncode != 0, f"snip {args} succeeded: {done.stdout}"
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("Error: "), done.stderr
    return done.stderr


def test_shorten_prints_the_short_url(tmp_path: Path, env: dict[str, str]) -> None:
    out = snip(tmp_path, env, "shorten", "https://example.com/some/long/path")
    assert re.fullmatch(r"http://snip\.test/[0-9A-Za-z]{7}\n", out), out


def test_shorten_with_options_prints_json(tmp_path: Path, env: dict[str, str]) -> None:
    out = snip(tmp_path, env, "shorten", "HTTPS://Example.com/page", "--code", "mine",
               "--title", "T", "--tag", "a", "--tag", "b", "--json")
    link = json.loads(out)
    assert link["code"] == "mine"
    assert link["short_url"] == f"{BASE}/mine"
    assert link["url"] == "https://example.com/page"
    assert link["title"] == "T"
    assert link["tags"] == ["a", "b"]
    assert link["created"] is True
    assert link["visits"] == 0


def test_taken_code_fails_with_a_readable_error(tmp_path: Path, env: dict[str, str]) -> None:
    snip(tmp_path, env, "shorten", "https://example.com/first", "--code", "mine")
    err = snip_fails(tmp_path, env, "shorten", "https://example.com/second", "--code", "mine")
    assert "'mine'" in err and "taken" in err
    shown = json.loads(snip(tmp_path, env, "show", "mine", "--json"))
    assert shown["url"] == "https://example.com/first"


def test_invalid_url_fails_with_the_reason(tmp_path: Path, env: dict[str, str]) -> None:
    err = snip_fails(tmp_path, env, "shorten", "javascript:alert(1)")
    assert "javascript:" in err and "only http and https" in err
    assert json.loads(snip(tmp_path, env, "list", "--json"))["total"] == 0


def test_list_shows_links_newest_first(tmp_path: Path, env: dict[str, str]) -> None:
    snip(tmp_path, env, "shorten", "https://example.com/one", "--code", "one")
    snip(tmp_path, env, "shorten", "https://example.com/two", "--code", "two")

    done = run_cli("list", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["two\t0\thttps://example.com/two",
                                        "one\t0\thttps://example.com/one"]
    assert "2 of 2 links" in done.stderr

    page = json.loads(snip(tmp_path, env, "list", "--json"))
    assert page["total"] == 2
    assert [item["code"] for item in page["items"]] == ["two", "one"]


def test_show_prints_url_and_title(tmp_path: Path, env: dict[str, str]) -> None:
    snip(tmp_path, env, "shorten", "https://example.com/docs", "--code", "docs-1",
         "--title", "The docs")
    out = snip(tmp_path, env, "show", "docs-1")
    assert re.search(r"^url\s+https://example\.com/docs$", out, re.MULTILINE), out
    assert re.search(r"^title\s+The docs$", out, re.MULTILINE), out
    assert re.search(r"^short_url\s+http://snip\.test/docs-1$", out, re.MULTILINE), out


def test_delete_then_show_is_not_found(tmp_path: Path, env: dict[str, str]) -> None:
    snip(tmp_path, env, "shorten", "https://example.com/gone", "--code", "gone")
    assert snip(tmp_path, env, "delete", "gone") == "deleted gone\n"
    err = snip_fails(tmp_path, env, "show", "gone")
    assert "no link has the code 'gone'" in err
    assert "no link has the code 'gone'" in snip_fails(tmp_path, env, "delete", "gone")


def test_db_upgrade_creates_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    env = snip_env(database_url=sqlite_url(path), auto_migrate="false")
    assert not path.exists()

    done = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "database at head" in done.stderr
    assert path.is_file()
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
        assert {"links", "alembic_version"} <= tables
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
    # With auto-migration off, the CLI works only because `db upgrade` made the schema.
    snip(tmp_path, env, "shorten", "https://example.com/x", "--code", "x1")
    assert json.loads(snip(tmp_path, env, "list", "--json"))["total"] == 1


def test_bad_configuration_is_reported_not_raised(tmp_path: Path, env: dict[str, str]) -> None:
    err = snip_fails(tmp_path, {**env, "SNIP_CODE_LENGTH": "2"}, "list")
    assert "bad configuration" in err and "code_length" in err


async def test_cli_links_are_redirected_by_the_http_app(
    tmp_path: Path, settings: Settings, client: httpx.AsyncClient
) -> None:
    # The CLI on the database `client` uses: a SQLite file or a PostgreSQL database.
    env = snip_env(database_url=settings.database_url, base_url=BASE)
    await asyncio.to_thread(snip, tmp_path, env, "shorten", "https://example.com/cli",
                            "--code", "from-cli", "--status", "301")
    short = (await asyncio.to_thread(snip, tmp_path, env, "shorten",
                                     "https://example.com/random")).strip()

    fixed = await client.get("/from-cli")
    assert (fixed.status_code, fixed.headers["location"]) == (301, "https://example.com/cli")
    random = await client.get(short.removeprefix(BASE))
    assert (random.status_code, random.headers["location"]) == (302, "https://example.com/random")
    listed = (await client.get("/api/v1/links")).json()
    assert listed["total"] == 2


def test_cli_needs_no_server(tmp_path: Path, env: dict[str, str]) -> None:
    # The base URL points at a port nothing listens on: the CLI works on the database itself.
    offline = {**env, "SNIP_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    out = snip(tmp_path, offline, "shorten", "https://example.com/offline", "--code", "off")
    assert out == f"{offline['SNIP_BASE_URL']}/off\n"
    assert json.loads(snip(tmp_path, offline, "show", "off", "--json"))["url"] == \
        "https://example.com/offline"
