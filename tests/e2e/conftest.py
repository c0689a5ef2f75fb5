"""Fixtures for end-to-end tests: the real `snip serve` process and the real CLI, on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, snip_env, sqlite_url, start_server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "snip.db"


@pytest.fixture
def server_env(db_path: Path) -> dict[str, str]:
    """Environment for a server or CLI on this test's database (SNIP_BASE_URL: the server's)."""
    return snip_env(database_url=sqlite_url(db_path))


@pytest.fixture
def start_snip(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `snip serve` processes (cwd=tmp_path); each must exit 0 on SIGTERM at teardown."""
    started: list[Server] = []

    def start(env: dict[str, str], *, workers: int | None = None) -> Server:
        server = start_server(tmp_path, env, workers=workers,
                              log_name=f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start

    failures = []
    for server in started:
        try:
            server.assert_stopped_cleanly()
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def server(start_snip: Callable[..., Server], server_env: dict[str, str]) -> Server:
    """A running server on a fresh database, SNIP_BASE_URL=http://127.0.0.1:<port>."""
    return start_snip(server_env)


@pytest.fixture
def base_url(server: Server) -> str:
    return server.base_url
