"""The click-writer process of `snip serve` (embedded mode, SQLite file): one writer beside the
HTTP workers, every click stored exactly once at SIGTERM, the writer and its socket directory
gone afterwards; a writer killed with SIGKILL is started again while redirects keep answering;
and SNIP_CLICKS_WRITER=inline runs no writer at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Server,
    http,
    many_requests,
    serving,
    snip_env,
    sqlite_url,
    start_server,
    wait_for_log,
)

pytestmark = pytest.mark.e2e

N = 500
WRITER_MODULE = "snip.entrypoints.click_writer"
WAIT = 15.0  # seconds any wait for a process may take, at most
VISITS = ("SELECT l.visits + COALESCE((SELECT SUM(c.clicks) FROM link_counters c "
          "WHERE c.code = l.code), 0) FROM links l WHERE l.code = ?")


def value(db: Path, query: str, *args: Any) -> Any:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(query, args).fetchone()[0]


def clicks_of(db: Path, code: str) -> tuple[int, int, int]:
    """(click rows, distinct click ids, visits) of a link."""
    return (value(db, "SELECT COUNT(*) FROM clicks WHERE code = ?", code),
            value(db, "SELECT COUNT(DISTINCT id) FROM clicks WHERE code = ?", code),
            value(db, VISITS, code))


# -- processes, from /proc ------------------------------------------------------------------------


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[1])  # after "(comm)": state, then the parent


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(root: int) -> set[int]:
    parents = {pid: _parent(pid) for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def is_writer(pid: int) -> bool:
    return WRITER_MODULE in _cmdline(pid)


def writers(server: Server) -> list[int]:
    """The click-writer processes under `snip serve` (children, grandchildren...)."""
    return sorted(pid for pid in descendants(server.process.pid) if is_writer(pid))


def alive(pid: int) -> bool:
    """`pid` is still a click writer (not exited, and not a reused pid), zombies excluded."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z" and is_writer(pid)


def writer_socket(pid: int) -> Path:
    """SNIP_CLICKS_WRITER_SOCKET as the writer was started with (the workers share it)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    entries = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
    return Path(entries["SNIP_CLICKS_WRITER_SOCKET"])


def wait_for_writer(server: Server, *, other_than: int | None = None) -> int:
    """The one click writer of `server` (other than `other_than`), once it runs."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = [pid for pid in writers(server) if pid != other_than]
        if found:
            time.sleep(0.2)  # a second one, if any, would be started by now
            found = writers(server)
            assert len(found) == 1, f"{len(found)} click writers: {found}\n{server.log()}"
            return found[0]
        assert server.process.poll() is None, f"snip serve exited\n{server.log()}"
        time.sleep(0.05)
    raise AssertionError(f"no click writer within {WAIT} s\n--- log ---\n{server.log()}")


@pytest.fixture
def seen_writers() -> Iterator[list[int]]:
    """Writer pids a test saw; any still running at the end is killed (it runs in its own
    session, out of reach of the server's process group)."""
    seen: list[int] = []
    yield seen
    for pid in seen:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def env_for(db: Path, **settings: str) -> dict[str, str]:
    # Only the shutdown writes these clicks (a batch age of five minutes, huge batches), unless
    # a test says otherwise.
    return snip_env(database_url=sqlite_url(db), **{"visit_flush_interval": "300",
                                                   "clicks_batch_size": "1000", **settings})


def new_link(server: Server, name: str) -> str:
    made = http("POST", f"{server.base_url}/api/v1/links", {"url": f"https://example.com/{name}"})
    assert made.status == 201, made.body
    return str(made.json()["code"])


def errors(log: str) -> list[str]:
    """The server's error lines: each event, and the last line of its exception if any."""
    found = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") == "error":
                cause = str(entry.get("exception", "")).strip().rpartition("\n")[2]
                found.append(f"{entry['event']} {cause}".strip())
    return found


# -- one writer; SIGTERM writes every click and leaves nothing behind -----------------------------


def test_one_writer_stores_every_click_at_sigterm_and_leaves_nothing_behind(
        tmp_path: Path, seen_writers: list[int]) -> None:
    db = tmp_path / "snip.db"
    with serving(tmp_path, env_for(db), workers=2) as server:
        wait_for_log(server, "worker-2")
        writer = wait_for_writer(server)
        seen_writers.append(writer)
        assert _parent(writer) == server.process.pid  # started by snip serve itself
        path = writer_socket(writer)
        directory = path.parent
        assert directory.name.startswith("snip-clicks-")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # only snip's user gets in
        assert path.is_socket()

        code = new_link(server, "one-writer")
        replies = many_requests(N, "GET", f"{server.base_url}/{code}", in_flight=20)
        assert Counter(r.status for r in replies) == {302: N}
        assert clicks_of(db, code)[0] == 0  # held in memory until the shutdown
        assert writers(server) == [writer]  # still the one writer
    # `serving` has sent SIGTERM and checked a clean exit (status 0, no traceback).
    assert clicks_of(db, code) == (N, N, N)
    assert not alive(writer)
    assert not directory.exists()
    # The writer wrote them (not the workers falling back to writing themselves).
    assert f"click writer stopped: {N} clicks written, 0 dropped" in server.log()
    assert "click writer unreachable" not in server.log()


# -- a writer killed while serving ----------------------------------------------------------------


@pytest.mark.parametrize("state", ["reading", "behind"])
def test_a_killed_writer_is_restarted_and_redirects_keep_answering(
        tmp_path: Path, seen_writers: list[int], state: str) -> None:
    """SIGKILL to the writer while clicks flow ("reading"), or while it is behind with frames
    unread in its socket ("behind": stopped with SIGSTOP first, as in a long transaction)."""
    db = tmp_path / "snip.db"
    # Clicks flow to the writer and the database all along (batches every 0.2 s).
    env = env_for(db, visit_flush_interval="0.2", clicks_batch_size="200")
    statuses: Counter[int | str] = Counter()
    counting = threading.Lock()
    stop = threading.Event()

    def traffic(url: str) -> None:
        deadline = time.monotonic() + 3 * WAIT
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status: int | str = http("GET", url, timeout=5).status
            except OSError as exc:  # no answer at all: counted as a failure, by its kind
                status = type(exc).__name__
            with counting:
                statuses[status] += 1
            time.sleep(0.005)

    server = start_server(tmp_path, env, workers=2)
    try:
        wait_for_log(server, "worker-2")
        first = wait_for_writer(server)
        seen_writers.append(first)
        path = writer_socket(first)
        directory = path.parent
        before = new_link(server, "before-the-kill")
        senders = [threading.Thread(target=traffic, args=(f"{server.base_url}/{before}",))
                   for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            deadline = time.monotonic() + WAIT  # the workers are connected and sending
            while clicks_of(db, before)[0] < 50:
                assert time.monotonic() < deadline, f"no clicks stored\n{server.log()}"
                time.sleep(0.05)
            if state == "behind":
                os.kill(first, signal.SIGSTOP)
                time.sleep(1.0)  # frames pile up unread in its socket
            os.kill(first, signal.SIGKILL)
            second = wait_for_writer(server, other_than=first)
            seen_writers.append(second)
            assert second != first
            assert writer_socket(second) == path  # the same socket, kept by snip serve
            time.sleep(1.5)  # the workers find the new writer again (they retry every second)
        finally:
            stop.set()
            for sender in senders:
                sender.join(WAIT)
        assert set(statuses) == {302}, statuses  # no redirect failed, before, during or after
        sent_before = statuses[302]

        after = new_link(server, "after-the-restart")
        replies = many_requests(N, "GET", f"{server.base_url}/{after}", in_flight=20)
        assert Counter(r.status for r in replies) == {302: N}
        assert writers(server) == [second]
    finally:
        status = server.stop()
    log = server.log()
    problems = "\n".join(errors(log))
    # Every click after the restart, once (and counted once).
    assert clicks_of(db, after) == (N, N, N), problems
    rows, distinct, visits = clicks_of(db, before)
    # Clicks the killed writer held (or had unread) are lost with it; none is stored twice.
    assert rows == distinct == visits <= sent_before
    assert not alive(second)
    assert not directory.exists()
    assert "the click writer exited (status -9); starting it again" in log
    server.assert_stopped_cleanly()  # status 0, no traceback
    assert status == 0


# -- SNIP_CLICKS_WRITER=inline --------------------------------------------------------------------


def test_inline_mode_runs_no_writer_and_still_stores_every_click(tmp_path: Path) -> None:
    db = tmp_path / "snip.db"
    with serving(tmp_path, env_for(db, clicks_writer="inline"), workers=2) as server:
        wait_for_log(server, "worker-2")
        code = new_link(server, "inline")
        replies = many_requests(N, "GET", f"{server.base_url}/{code}", in_flight=20)
        assert Counter(r.status for r in replies) == {302: N}
        assert writers(server) == []
        assert len(descendants(server.process.pid)) == 2  # the two HTTP workers, nothing else
        assert clicks_of(db, code)[0] == 0
    assert clicks_of(db, code) == (N, N, N)
    assert "click writer" not in server.log()
