"""PostgreSQL only: what the migrations build, `snip db upgrade` run again, and the visit limit
held exactly by two worker processes sharing one database.

Everything else runs on PostgreSQL through the `[postgresql]` variant of the shared fixtures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import Connection

from snip.adapters.sql.engine import make_engine
from snip.adapters.sql.migrate import alembic_config
from snip.adapters.sql.schema import metadata
from snip.bootstrap import create_app
from snip.config import Settings
from tests.conftest import BASE_URL
from tests.helpers import Server, all_at_once, http, run_cli, serving, snip_env, wait_for_log
from tests.postgres import PostgresDatabases, fetch, fetchval, run_sync


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    assert head is not None
    return head


def schema_of(url: str) -> dict[str, Any]:
    """Tables, columns, constraints and indexes of the `public` schema, for comparison."""
    return {
        "columns": {
            (r["table_name"], r["column_name"]): (r["data_type"], r["is_nullable"])
            for r in fetch(url, "SELECT table_name, column_name, data_type, is_nullable "
                                "FROM information_schema.columns WHERE table_schema = 'public'")
        },
        "constraints": {
            r["conname"]: (r["tbl"], r["contype"], r["def"])
            for r in fetch(url, "SELECT conrelid::regclass::text AS tbl, conname, "
                                "contype::text AS contype, pg_get_constraintdef(oid) AS def "
                                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace")
        },
        "indexes": {
            r["indexname"]: (r["tablename"], r["indexdef"])
            for r in fetch(url, "SELECT tablename, indexname, indexdef FROM pg_indexes "
                                "WHERE schemaname = 'public'")
        },
    }


@pytest.fixture
def empty_database(postgres: PostgresDatabases) -> Iterator[str]:
    """A new PostgreSQL database with no tables at all."""
    with postgres.database(migrated=False) as url:
        yield url


def db_upgrade(url: str, cwd: Path) -> None:
    done = run_cli("db", "upgrade", env=snip_env(database_url=url), cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# -- migrations -----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_db_upgrade_builds_the_schema_and_is_idempotent(empty_database: str,
                                                        tmp_path: Path) -> None:
    assert schema_of(empty_database) == {"columns": {}, "constraints": {}, "indexes": {}}
    db_upgrade(empty_database, tmp_path)
    schema = schema_of(empty_database)

    tables = {table for table, _column in schema["columns"]}
    assert tables == {"alembic_version", *metadata.tables}  # every table schema.py declares
    constraints = schema["constraints"]
    assert constraints["uq_links_code"] == ("links", "u", "UNIQUE (code)")
    assert constraints["uq_links_reuse_key"] == ("links", "u", "UNIQUE (reuse_key)")
    assert constraints["pk_links"] == ("links", "p", "PRIMARY KEY (id)")
    assert constraints["pk_link_tags"] == ("link_tags", "p", "PRIMARY KEY (link_id, tag)")
    assert constraints["fk_link_tags_link_id_links"] == (
        "link_tags", "f", "FOREIGN KEY (link_id) REFERENCES links(id) ON DELETE CASCADE")
    indexes = schema["indexes"]
    assert indexes["ix_links_url_digest"][1].endswith("USING btree (url_digest)")
    assert indexes["ix_links_created_at"][1].endswith("USING btree (created_at)")
    assert indexes["ix_link_tags_tag"][1].endswith("USING btree (tag)")
    assert indexes["uq_links_code"][1].startswith("CREATE UNIQUE INDEX")
    assert indexes["uq_links_reuse_key"][1].startswith("CREATE UNIQUE INDEX")
    columns = schema["columns"]
    for column in ("created_at", "updated_at", "expires_at"):
        assert columns["links", column][0] == "timestamp with time zone", column
    assert columns["links", "id"][0] == "bigint"
    assert columns["link_tags", "link_id"][0] == "bigint"
    assert columns["links", "reuse_key"][1] == "YES"
    assert columns["links", "code"][1] == "NO"
    assert fetchval(empty_database, "SELECT array_agg(version_num) FROM alembic_version") == \
        [head_revision()]

    db_upgrade(empty_database, tmp_path)  # again: nothing to do, nothing changes
    assert schema_of(empty_database) == schema
    assert fetchval(empty_database, "SELECT array_agg(version_num) FROM alembic_version") == \
        [head_revision()]


def test_migrated_schema_matches_the_models(postgres_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: migrations and schema.py agree."""

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async def differences() -> list[Any]:
        engine = make_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    assert run_sync(differences) == []


# -- the visit limit across two worker processes --------------------------------------------------


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    with serving(tmp_path, snip_env(database_url=postgres_url), workers=2) as server:
        wait_for_log(server, "worker-2")
        yield server


@pytest.mark.e2e
def test_visit_limit_is_exact_across_workers(pg_server: Server, postgres_url: str) -> None:
    made = http("POST", f"{pg_server.base_url}/api/v1/links",
                {"url": "https://example.com/limited", "max_visits": 100})
    assert made.status == 201, made.body
    code = made.json()["code"]

    replies = all_at_once(500, "GET", f"{pg_server.base_url}/{code}")
    assert Counter(r.status for r in replies) == {302: 100, 410: 400}, \
        [r.body[:300] for r in replies if r.status >= 500]
    assert all(r.headers["location"] == "https://example.com/limited"
               for r in replies if r.status == 302)

    assert http("GET", f"{pg_server.base_url}/api/v1/links/{code}").json()["visits"] == 100
    assert fetchval(postgres_url, "SELECT visits FROM links WHERE code = $1", code) == 100
    assert http("GET", f"{pg_server.base_url}/{code}").status == 410


# -- the server's locale --------------------------------------------------------------------------


async def test_order_by_code_is_by_code_point_whatever_the_servers_locale(
    postgres: PostgresDatabases,
) -> None:
    if not fetchval(postgres.admin_url,
                    "SELECT count(*) FROM pg_collation WHERE collname = 'en-US-x-icu'"):
        pytest.skip("this PostgreSQL server has no ICU collations")
    options = "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
    with postgres.database(migrated=False, options=options) as url:
        app = create_app(Settings(database_url=url, base_url=BASE_URL))
        async with LifespanManager(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL
        ) as client:
            for code in ["b", "B", "a", "A", "Z9", "9z", "_x", "-y"]:
                made = await client.post("/api/v1/links",
                                         json={"url": f"https://example.com/{code}", "code": code})
                assert made.status_code == 201, made.text
            admin = await app.state.snip.accounts.bootstrap()  # type: ignore[attr-defined]
            listed = (await client.get("/api/v1/links", params={"order": "code"},
                                       headers={"X-Api-Key": admin.key})).json()
    codes = [item["code"] for item in listed["items"]]
    assert codes == sorted(codes)  # as on SQLite
