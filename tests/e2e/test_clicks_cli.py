"""`snip clicks stats` and `snip clicks purge` as a user runs them, on a SQLite file."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import run_cli, snip_env, sqlite_url

pytestmark = pytest.mark.e2e

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def snip(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.returncode == 0, f"snip {args} exited {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout, done.stderr


def add_clicks(db: Path, code: str, times: list[datetime], bot_every: int = 4) -> None:
    """Rows as the click writer stores them (SQLite keeps UTC times as text)."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO clicks (id, code, ts, browser, is_bot) VALUES (?, ?, ?, ?, ?)",
            [(str(uuid.uuid4()), code, t.strftime("%Y-%m-%d %H:%M:%S.%f"), "Firefox",
              i % bot_every == 0) for i, t in enumerate(times)])


def test_purge_keeps_the_stats(tmp_path: Path) -> None:
    db = tmp_path / "snip.db"
    env = snip_env(database_url=sqlite_url(db), click_retention_days="45")
    snip(tmp_path, env, "shorten", "https://example.com/cli", "--code", "cli1")
    times = [TODAY - timedelta(days=d, hours=h) for d in range(0, 80, 3) for h in (1, 5, 9)]
    add_clicks(db, "cli1", times)
    span = ["--from", (TODAY - timedelta(days=90)).date().isoformat(),
            "--to", TODAY.isoformat()]

    before, _ = snip(tmp_path, env, "clicks", "stats", "cli1", "--json", *span)
    out, err = snip(tmp_path, env, "clicks", "purge")  # SNIP_CLICK_RETENTION_DAYS=45
    after, _ = snip(tmp_path, env, "clicks", "stats", "cli1", "--json", *span)

    rolled = [d for d in range(0, 80, 3) if TODAY - timedelta(days=d, hours=9) <
              TODAY - timedelta(days=45)]
    assert out.splitlines() == [
        f"rolled up {(TODAY - timedelta(days=d + 1)).date().isoformat()}"
        for d in sorted(rolled, reverse=True)]
    assert f"purged {3 * len(rolled)} clicks in {len(rolled)} days" in err
    assert json.loads(after) == json.loads(before)
    assert json.loads(before)["total"] == len(times)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM clicks").fetchone()[0] == \
            len(times) - 3 * len(rolled)

    text, _ = snip(tmp_path, env, "clicks", "stats", "cli1", *span)
    assert text.startswith(f"cli1: {len(times)} clicks (")
    assert "browsers: Firefox" in text


def test_retention_off_and_bad_input(tmp_path: Path) -> None:
    db = tmp_path / "snip.db"
    env = snip_env(database_url=sqlite_url(db), click_retention_days="0")
    snip(tmp_path, env, "shorten", "https://example.com/cli", "--code", "cli2")
    add_clicks(db, "cli2", [TODAY - timedelta(days=400)])
    out, err = snip(tmp_path, env, "clicks", "purge")
    assert "retention is off" in err and out == ""
    _, err = snip(tmp_path, env, "clicks", "purge", "--older-than", "100")
    assert "purged 1 clicks in 1 days" in err

    for args in (["clicks", "stats", "cli2", "--from", "last week"],
                 ["clicks", "stats", "nope"],
                 ["clicks", "stats", "cli2", "--from", "2026-02-01", "--to", "2026-01-01"]):
        done = run_cli(*args, env=env, cwd=tmp_path)
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr, done.stderr
