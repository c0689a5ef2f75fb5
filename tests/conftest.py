"""Shared fixtures: a fresh SQLite database per test, the ASGI app, and an HTTP client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from snip.bootstrap import Snip, create_app, running
from snip.config import Settings

BASE_URL = "http://snip.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'snip.db'}",
        base_url=BASE_URL,
        visit_flush_interval=0.05,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with LifespanManager(application):  # type: ignore[arg-type]
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@pytest.fixture
def snip(app: object) -> Snip:
    """The wired services behind `app`, for tests that look underneath the HTTP layer."""
    return app.state.snip  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Snip]:
    """snip's services without HTTP (as the CLI uses them)."""
    async with running(settings) as s:
        yield s
