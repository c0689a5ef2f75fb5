"""`snip serve` as a real process: curl against it, its database, its shutdown, its help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Server, free_port, http, run_cli, snip_env, sqlite_url, terminate

pytestmark = pytest.mark.e2e

LONG_URL = "https://example.com/some/long/path"
CODE = re.compile(r"[0-9A-Za-z]{7}")


def curl(*args: str) -> str:
    """The real curl binary, bounded, no proxies; its stdout."""
    done = subprocess.run(
        ["curl", "--noproxy", "*", "--max-time", "10", *args],
        env=snip_env(), capture_output=True, text=True, timeout=20, check=False,
    )
    assert done.returncode == 0, f"curl {args} failed ({done.returncode}): {done.stderr}"
    return done.stdout


def curl_status_and_location(url: str) -> str:
    return curl("-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", url)


def test_original_curl_flow_shortens_and_redirects(base_url: str) -> None:
    out = curl("-s", "-X", "POST", "-H", "Content-Type: application/json",
               "-d", json.dumps({"url": LONG_URL}), f"{base_url}/shorten")
    body = json.loads(out)
    code = body["code"]
    assert CODE.fullmatch(code)
    assert body["short_url"] == f"{base_url}/r/{code}"
    assert body["url"] == LONG_URL

    assert curl_status_and_location(body["short_url"]) == f"302 {LONG_URL}"
    assert curl_status_and_location(f"{base_url}/{code}") == f"302 {LONG_URL}"


def test_v1_api_short_url_is_followed_by_curl(base_url: str) -> None:
    def create(body: dict[str, object]) -> dict[str, str]:
        out = curl("-s", "-w", "\n%{http_code}", "-X", "POST",
                   "-H", "Content-Type: application/json", "-d", json.dumps(body),
                   f"{base_url}/api/v1/links")
        text, status = out.rsplit("\n", 1)
        assert status == "201", text
        return json.loads(text)  # type: ignore[no-any-return]

    plain = create({"url": LONG_URL})
    assert plain["short_url"] == f"{base_url}/{plain['code']}"
    assert curl_status_and_location(plain["short_url"]) == f"302 {LONG_URL}"

    temporary = create({"url": LONG_URL + "?v=2", "redirect_status": 307})
    assert curl_status_and_location(temporary["short_url"]) == f"307 {LONG_URL}?v=2"
    # The original design's route always answers 302, whatever the link's own status.
    assert curl_status_and_location(f"{base_url}/r/{temporary['code']}") == f"302 {LONG_URL}?v=2"


def test_unknown_code_is_a_404_page(base_url: str) -> None:
    reply = http("GET", f"{base_url}/NoSuchCode")
    assert reply.status == 404
    assert "location" not in reply.headers
    assert b"Link not found" in reply.body


def test_default_database_is_created_in_the_working_directory(
    tmp_path: Path, start_snip: Callable[..., Server]
) -> None:
    env = snip_env()  # SNIP_DATABASE_URL unset: sqlite:///./snip.db
    assert not (tmp_path / "snip.db").exists()

    first = start_snip(env)
    made = http("POST", f"{first.base_url}/api/v1/links", {"url": LONG_URL, "code": "keep-me"})
    assert made.status == 201, made.body
    assert (tmp_path / "snip.db").is_file()
    first.assert_stopped_cleanly()

    second = start_snip(env)
    again = http("GET", f"{second.base_url}/keep-me")
    assert (again.status, again.headers.get("location")) == (302, LONG_URL)
    assert http("GET", f"{second.base_url}/api/v1/links/keep-me").json()["url"] == LONG_URL


def test_visits_in_memory_are_written_on_sigterm(
    tmp_path: Path, start_snip: Callable[..., Server], server_env: dict[str, str]
) -> None:
    env = {**server_env, "SNIP_VISIT_FLUSH_INTERVAL": "60"}  # only shutdown can write them
    server = start_snip(env)
    code = http("POST", f"{server.base_url}/api/v1/links", {"url": LONG_URL}).json()["code"]
    for _ in range(25):
        reply = http("GET", f"{server.base_url}/{code}")
        assert reply.status == 302

    server.assert_stopped_cleanly()

    shown = run_cli("show", code, "--json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["visits"] == 25


def test_help_lists_commands_and_serve_options(tmp_path: Path) -> None:
    top = run_cli("--help", env=snip_env(), cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    for command in ("serve", "shorten", "list", "show", "delete", "db"):
        assert re.search(rf"^\s+{command}\b", top.stdout, re.MULTILINE), top.stdout

    serve = run_cli("serve", "--help", env=snip_env(), cwd=tmp_path)
    assert serve.returncode == 0, serve.stderr
    for option in ("--host", "--port", "--workers"):
        assert option in serve.stdout
    assert not (tmp_path / "snip.db").exists()  # help touches no database


def test_without_a_base_url_short_links_point_where_the_server_listens(tmp_path: Path) -> None:
    port = free_port()
    env = snip_env(database_url=sqlite_url(tmp_path / "own.db"))
    process = subprocess.Popen(
        [sys.executable, "-m", "snip", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if http("GET", f"{base}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "snip serve did not come up"
            time.sleep(0.1)
        made = http("POST", f"{base}/shorten", {"url": "https://example.com/own"}).json()
        assert made["short_url"] == f"{base}/r/{made['code']}"
        assert http("POST", f"{base}/api/v1/links", {"url": f"{base}/x"}).status == 422
    finally:
        terminate(process, 15, "snip serve", lambda: "", process.kill)
