"""PostgreSQL for tests: the real server from SNIP_TEST_POSTGRES_URL, a fresh migrated database each.

Once per session a template database `snip_tpl_<host>_<pid>_<random>` is created and migrated
with snip's own Alembic migrations; each test then gets `CREATE DATABASE snip_t_<…> TEMPLATE …`
(made ahead in the background) and the database is dropped afterwards. Databases an earlier run on this
machine left behind (its process is gone: killed, crashed) are dropped at session start; those of
runs still going, or of other machines sharing the server, are left alone.

When the server cannot be reached, tests that need it skip with the reason on a developer
laptop and fail when CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from tests.helpers import missing

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
URL_VARIABLE = "SNIP_TEST_POSTGRES_URL"
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 30.0

TEMPLATE_PREFIX = "snip_tpl_"
DATABASE_PREFIX = "snip_t_"
# Which machine made a database: its PID only means something there.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_NAME = re.compile(rf"^(?:{TEMPLATE_PREFIX}|{DATABASE_PREFIX})([0-9a-f]{{6}})_(\d+)_[0-9a-f]+$")

T = TypeVar("T")


def admin_url() -> str:
    """The server's URL for administration (create and drop databases), from the environment."""
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL


def database_url(base_url: str, name: str) -> str:
    """`base_url` with its database replaced by `name` (user, password, host, query kept)."""
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def shown(url: str) -> str:
    """`url` safe for a message: any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _dsn(url: str) -> str:
    """A libpq-style URL asyncpg accepts (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _quote(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"unexpected database name {name!r}")
    return f'"{name}"'


def in_thread(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread of its own; its result or its exception.

    Fixtures and tests may be inside pytest-asyncio's event loop (or about to be); a private
    thread neither needs nor disturbs it. Every function given here bounds its own waits.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="postgres-helper", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` to completion on a new event loop in its own thread."""
    return in_thread(lambda: asyncio.run(make()))


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(url), timeout=CONNECT_TIMEOUT,
                                 command_timeout=COMMAND_TIMEOUT, **kwargs)


def unreachable(url: str) -> str | None:
    """None if a connection to `url` opens within CONNECT_TIMEOUT s, else why not."""

    async def probe() -> None:
        conn = await asyncio.wait_for(connect(url), CONNECT_TIMEOUT + 1)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        run_sync(probe)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return None


def require_server(url: str | None = None) -> str:
    """The admin URL if the server answers; otherwise skip (laptop) or fail (CI=true)."""
    url = url or admin_url()
    error = unreachable(url)
    if error is None:
        return url
    message = f"PostgreSQL not reachable at {shown(url)}: {error}; set {URL_VARIABLE}"
    missing(message)


def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query on the database at `url` (blocking, bounded); its rows."""

    async def go() -> list[asyncpg.Record]:
        conn = await connect(url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_sync(go)


def fetchval(url: str, query: str, *args: Any) -> Any:
    rows = fetch(url, query, *args)
    return rows[0][0] if rows else None


def _new_name(prefix: str) -> str:
    return f"{prefix}{HOST_TAG}_{os.getpid()}_{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str) -> bool:
    """A database of ours from a test process on this machine that is no longer running."""
    match = _NAME.match(name)
    if match is None:
        return False
    host, pid = match.group(1), int(match.group(2))
    return host == HOST_TAG and pid != os.getpid() and not _pid_alive(pid)


class PostgresDatabases:
    """Fresh migrated databases on one server, made from a per-session template.

    Copying a database costs tens of milliseconds on an idle server and several times that on
    a busy one, so copies are made one step ahead and dropped in a background thread, while
    tests run. Leaving the `with` block waits for that thread and drops everything it made.
    """

    SPARES = 2  # copies of the template kept ready

    def __init__(self, url: str) -> None:
        self.admin_url = url
        self.template: str | None = None
        self._lock = threading.Lock()
        self._spares: list[str] = []
        self._background: ThreadPoolExecutor | None = None
        self._jobs: list[Future[None]] = []

    # -- the session -----------------------------------------------------------------------

    def __enter__(self) -> PostgresDatabases:
        self.drop_stale()
        self.template = template = _new_name(TEMPLATE_PREFIX)
        self._execute(f"CREATE DATABASE {_quote(template)}")
        try:
            from snip.adapters.sql.migrate import upgrade

            # Alembic runs its own event loop: give it a thread of its own as well.
            in_thread(upgrade, self.url(template))
            # Nobody may be connected to a template while it is copied.
            self._execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", template,
            )
        except BaseException:
            self.drop(template)
            self.template = None
            raise
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-bg")
        return self

    def __exit__(self, *exc: object) -> None:
        errors: list[BaseException] = []
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
            errors = [e for job in self._jobs if (e := job.exception()) is not None]
            self._jobs.clear()
        with self._lock:
            spares, self._spares = self._spares, []
        for name in spares:
            self.drop(name)
        if self.template is not None:
            self.drop(self.template)
            self.template = None
        if errors:
            raise RuntimeError(f"{len(errors)} background database jobs failed; "
                               f"the first: {errors[0]!r}") from errors[0]

    def drop_stale(self) -> list[str]:
        """Drop what earlier, finished test runs on this machine left; the names dropped."""
        rows = fetch(
            self.admin_url,
            "SELECT datname FROM pg_database WHERE datname LIKE 'snip\\_t\\_%' "
            "OR datname LIKE 'snip\\_tpl\\_%'",
        )
        stale = [r["datname"] for r in rows if is_stale(r["datname"])]
        for name in stale:
            self.drop(name)
        return stale

    # -- per test ----------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return database_url(self.admin_url, name)

    def create(self, *, migrated: bool = True, options: str = "") -> str:
        """A new database (a copy of the migrated template, or empty); its name.

        `options` (for an empty database only) go into CREATE DATABASE, e.g. a locale.
        """
        if migrated and options:
            raise ValueError("a copy of the template has the template's options")
        if not migrated:
            return self._create("TEMPLATE template0 " + options)
        with self._lock:
            name = self._spares.pop() if self._spares else None
        if name is None:
            name = self._copy()
        self._in_background(self._make_spare)
        return name

    def drop(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")

    def drop_soon(self, name: str) -> None:
        """Drop `name` in the background (at the latest when the session ends)."""
        if not self._in_background(self.drop, name):
            self.drop(name)

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True, options: str = "") -> Iterator[str]:
        """A fresh database's URL for the `with` block; dropped afterwards, even if in use."""
        name = self.create(migrated=migrated, options=options)
        try:
            yield self.url(name)
        finally:
            self.drop_soon(name)

    # -- internals ---------------------------------------------------------------------------

    def _copy(self) -> str:
        if self.template is None:
            raise RuntimeError("PostgresDatabases is not entered")
        return self._create(f"TEMPLATE {_quote(self.template)}")

    def _create(self, clauses: str) -> str:
        name = _new_name(DATABASE_PREFIX)
        self._execute(f"CREATE DATABASE {_quote(name)} {clauses}".rstrip())
        return name

    def _make_spare(self) -> None:
        with self._lock:
            if len(self._spares) >= self.SPARES:
                return
        name = self._copy()
        with self._lock:
            self._spares.append(name)

    def _in_background(self, function: Callable[..., None], *args: Any) -> bool:
        if self._background is None:
            return False
        self._jobs.append(self._background.submit(function, *args))
        return True

    def _execute(self, statement: str, *args: Any) -> None:
        async def go() -> None:
            conn = await connect(self.admin_url)
            try:
                await conn.execute(statement, *args)
            finally:
                await conn.close()

        run_sync(go)


@contextlib.contextmanager
def session_databases(url: str | None = None) -> Iterator[PostgresDatabases]:
    """For a session fixture: the reachable server (or skip/fail) with its migrated template."""
    with PostgresDatabases(require_server(url)) as databases:
        yield databases
