"""`snip import` and `snip export` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli, snip_env

pytestmark = pytest.mark.e2e

BASE = "http://snip.test"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return snip_env(database_url=database_url, base_url=BASE)


def snip(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    done = run_cli(*args, env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, f"snip {args} exited {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout, done.stderr


def summary(out: str) -> dict[str, int]:
    """`read 5: created 3, skipped 1 (already there), invalid 1` → numbers by word."""
    line = out.strip().splitlines()[-1]
    words = line.replace(":", "").replace(",", "").split()
    return {words[i]: int(words[i + 1]) for i in range(len(words) - 1)
            if words[i] in ("read", "created", "skipped", "invalid")}


def exported(tmp_path: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out, _ = snip(tmp_path, env, "export", "--format", "json")
    return {link["code"]: link for link in json.loads(out)}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_import_reports_invalid_rows_and_reruns_create_nothing(
        tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "links.csv",
                   "url,code,title,tags\n"
                   "https://example.com/a,alpha,Alpha,\"x,y\"\n"
                   "javascript:alert(1),,,\n"
                   "https://example.com/b,,Bee,\n"
                   "https://example.com/c,bad code!,,\n"
                   ",,no url,\n"
                   "HTTPS://EXAMPLE.com:443/d,,,\n")
    out, err = snip(tmp_path, env, "import", str(source))
    assert summary(out) == {"read": 6, "created": 3, "skipped": 0, "invalid": 3}
    assert "row 2:" in err and "row 4:" in err and "row 5:" in err
    assert "row 1:" not in err and "row 3:" not in err
    links = exported(tmp_path, env)
    assert links["alpha"]["url"] == "https://example.com/a"
    assert links["alpha"]["title"] == "Alpha" and links["alpha"]["tags"] == ["x", "y"]
    assert {link["url"] for link in links.values()} == {
        "https://example.com/a", "https://example.com/b", "https://example.com/d"}

    again, _ = snip(tmp_path, env, "import", str(source))
    assert summary(again) == {"read": 6, "created": 0, "skipped": 3, "invalid": 3}
    assert exported(tmp_path, env) == links


def test_json_import_with_owner(tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "links.json", json.dumps([
        {"url": "https://example.com/j1", "code": "j1", "tags": ["Team"], "title": "J"},
        {"url": "https://example.com/j2", "password": "hunter22", "max_visits": 5},
        {"url": 42},
        "not an object",
    ]))
    out, err = snip(tmp_path, env, "import", str(source), "--owner", "carol")
    assert summary(out) == {"read": 4, "created": 2, "skipped": 0, "invalid": 2}
    assert "row 3:" in err and "row 4:" in err
    links = exported(tmp_path, env)
    assert links["j1"]["tags"] == ["team"] and links["j1"]["owner"] == "carol"
    protected = next(v for k, v in links.items() if k != "j1")
    assert protected["password_hash"].startswith("$argon2id$")
    assert protected["max_visits"] == 5 and protected["owner"] == "carol"


def test_yourls_export_is_imported_with_keywords_clicks_and_dates(
        tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "yourls.csv",
                   "keyword,url,title,timestamp,ip,clicks\n"
                   "ozh,http://ozh.org/,Ozh,2019-03-04 05:06:07,127.0.0.1,12\n"
                   "yourls,https://yourls.org/,YOURLS,2020-01-01 00:00:00,10.0.0.1,0\n")
    out, _ = snip(tmp_path, env, "import", str(source))  # auto-detected
    assert summary(out)["created"] == 2
    links = exported(tmp_path, env)
    assert links["ozh"]["url"] == "http://ozh.org/"
    assert links["ozh"]["visits"] == 12 and links["ozh"]["title"] == "Ozh"
    assert links["ozh"]["created_at"].startswith("2019-03-04T05:06:07")


def test_shlink_export_is_imported_with_codes_and_pipe_separated_tags(
        tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "short_urls.csv",
                   "createdAt,domain,shortCode,shortUrl,longUrl,title,tags,visits\n"
                   "2023-06-01T10:00:00+02:00,,abc12,https://s.test/abc12,"
                   "https://example.com/shlink,Shlink,news|tech,7\n")
    older = write(tmp_path / "older.csv",  # older web clients: no shortCode column
                  "createdAt,shortUrl,longUrl,title,tags,visits\n"
                  "2022-01-01T00:00:00+00:00,https://s.test/old1,https://example.com/old,,,0\n")
    assert summary(snip(tmp_path, env, "import", str(source), "--format", "shlink")[0])[
        "created"] == 1
    assert summary(snip(tmp_path, env, "import", str(older))[0])["created"] == 1
    links = exported(tmp_path, env)
    assert links["abc12"]["tags"] == ["news", "tech"] and links["abc12"]["visits"] == 7
    assert links["abc12"]["created_at"].startswith("2023-06-01T08:00:00")
    assert links["old1"]["url"] == "https://example.com/old"


def test_bitly_export_takes_the_code_from_the_link(tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "bitly.csv",
                   "link,long_url,title,created\n"
                   "bit.ly/3xYz9Ab,https://example.com/bitly,From Bitly,2021-07-08 09:10:11\n"
                   "https://bit.ly/qwerty1,https://example.com/second,,2021-07-09 00:00:00\n")
    out, _ = snip(tmp_path, env, "import", str(source))
    assert summary(out)["created"] == 2
    links = exported(tmp_path, env)
    assert links["3xYz9Ab"]["url"] == "https://example.com/bitly"
    assert links["qwerty1"]["url"] == "https://example.com/second"


def test_export_then_import_into_a_fresh_database_round_trips(
        tmp_path: Path, env: dict[str, str]) -> None:
    source = write(tmp_path / "links.json", json.dumps([
        {"url": "https://example.com/1", "code": "one", "title": "One", "tags": ["a", "b"]},
        {"url": "https://example.com/2", "password": "hunter22", "disabled": True},
        {"url": "https://example.com/3", "expires_at": "2001-01-01T00:00:00Z",
         "redirect_status": 301, "visits": 3},
        {"url": "https://example.com/4,comma", "title": "quote \" and comma ,"},
    ]))
    snip(tmp_path, env, "import", str(source))
    for fmt in ("csv", "json"):
        dump = tmp_path / f"dump.{fmt}"
        snip(tmp_path, env, "export", "--format", fmt, "-o", str(dump))
        fresh = snip_env(database_url=f"sqlite:///{tmp_path / f'fresh-{fmt}.db'}", base_url=BASE)
        out, _ = snip(tmp_path, fresh, "import", str(dump))
        assert summary(out) == {"read": 4, "created": 4, "skipped": 0, "invalid": 0}
        assert exported(tmp_path, fresh) == exported(tmp_path, env)
    with (tmp_path / "dump.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_a_large_file_goes_through_the_process_pool(tmp_path: Path, env: dict[str, str]) -> None:
    rows = 30_000
    bad = {17, 12_345, 29_999}
    with (tmp_path / "big.csv").open("w", encoding="utf-8") as f:
        f.write("url,title\n")
        for i in range(1, rows + 1):
            url = "ftp://nope" if i in bad else f"https://example.com/item/{i}?ref=bulk"
            f.write(f"{url},Item number {i}\n")
    out, err = snip(tmp_path, env, "import", str(tmp_path / "big.csv"), "--workers", "2")
    assert summary(out) == {"read": rows, "created": rows - 3, "skipped": 0, "invalid": 3}
    for row in bad:
        assert f"row {row}:" in err
    again, _ = snip(tmp_path, env, "import", str(tmp_path / "big.csv"), "-q")
    assert summary(again) == {"read": rows, "created": 0, "skipped": rows - 3, "invalid": 3}


def test_blocklisted_domains_are_refused_as_on_create(
        tmp_path: Path, env: dict[str, str]) -> None:
    snip(tmp_path, env, "blocklist", "add", "evil.example")
    source = write(tmp_path / "links.csv",
                   "url\nhttps://evil.example/x\nhttps://www.evil.example/y\n"
                   "https://fine.example/z\n")
    out, err = snip(tmp_path, env, "import", str(source))
    assert summary(out) == {"read": 3, "created": 1, "skipped": 0, "invalid": 2}
    assert "row 1:" in err and "row 2:" in err and "blocklist" in err
    assert [link["url"] for link in exported(tmp_path, env).values()] == ["https://fine.example/z"]


def test_unreadable_files_fail_cleanly(tmp_path: Path, env: dict[str, str]) -> None:
    no_url = write(tmp_path / "x.csv", "name,where\na,b\n")
    done = run_cli("import", str(no_url), env=env, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "url" in done.stderr
    broken = write(tmp_path / "x.json", "[{\"url\": ")
    done = run_cli("import", str(broken), env=env, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
