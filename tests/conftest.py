"""Shared fixtures: a fresh database per test, the ASGI app, and an HTTP client on it.

Every test that uses `settings` (and so `app`, `client`, `snip` or `services`) runs once per
storage backend: `[sqlite]` on a new file, `[postgresql]` on a new database copied from a
migrated template (see tests/postgres.py). Without a PostgreSQL server only the `[postgresql]`
variants skip (on CI=true they fail).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from snip.bootstrap import Snip, create_app, running
from snip.config import Settings
from snip.domain.accounts import Actor
from tests.postgres import PostgresDatabases, session_databases

BASE_URL = "http://snip.test"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """The PostgreSQL server at SNIP_TEST_POSTGRES_URL with a migrated template (skip if absent).

    Made on first use only, so a run without PostgreSQL tests never connects.
    """
    with session_databases() as databases:
        yield databases


@pytest.fixture
def postgres_url(postgres: PostgresDatabases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test, dropped afterwards."""
    with postgres.database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SNIP_DATABASE_URL for this test: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'snip.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        base_url=BASE_URL,
        visit_flush_interval=0.05,
        # Tests create links freely; creation limits are tested in test_rate_limits.py.
        rate_limit_create="off",
        rate_limit_anonymous_create="off",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with LifespanManager(application):  # type: ignore[arg-type]
        yield application


@pytest.fixture
async def admin_key(app: object) -> str:
    """An API key of the admin user `admin` (made through the account service)."""
    accounts = app.state.snip.accounts  # type: ignore[attr-defined]
    _, made = await accounts.create_user(Actor.system(), "admin", "admin", with_key=True)
    return str(made.key)


@pytest.fixture
async def client(app: object, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app that sends the admin's API key (`anon_client` sends none)."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                 headers={"Authorization": f"Bearer {admin_key}"}) as c:
        yield c


@pytest.fixture
async def anon_client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app without an API key: an anonymous caller."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


UserClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def user_client(app: object) -> AsyncIterator[UserClient]:
    """`await user_client("bob", role="user", scopes=None)`: a client with a new key of that
    user (made if missing); `client.key` holds the raw key."""
    accounts = app.state.snip.accounts  # type: ignore[attr-defined]
    system = Actor.system()
    async with AsyncExitStack() as stack:

        async def make(name: str, *, role: str = "user", scopes: str | None = None,
                       expires_at: object = None) -> httpx.AsyncClient:
            if {u.name for u in await accounts.users(system)} & {name} == set():
                await accounts.create_user(system, name, role)
            made = await accounts.create_key(system, name, scopes=scopes,
                                             expires_at=expires_at)
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            c = await stack.enter_async_context(httpx.AsyncClient(
                transport=transport, base_url=BASE_URL,
                headers={"Authorization": f"Bearer {made.key}"}))
            c.key = made.key  # type: ignore[attr-defined]
            c.key_id = made.info.id  # type: ignore[attr-defined]
            return c

        yield make


@pytest.fixture
def snip(app: object) -> Snip:
    """The wired services behind `app`, for tests that look underneath the HTTP layer."""
    return app.state.snip  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Snip]:
    """snip's services without HTTP (as the CLI uses them)."""
    async with running(settings) as s:
        yield s
