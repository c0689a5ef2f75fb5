"""Two snip processes sharing one database and one Redis: the shared tier and invalidation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import delete

from snip.adapters.sql.schema import links
from snip.bootstrap import Snip, running
from snip.config import Settings
from snip.service_layer.links import NewLink
from tests.helpers import free_port
from tests.redis_service import redis_url


def _settings(tmp_path: Path, redis: str | None) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'shared.db'}", base_url="http://s.test",
                    redis_url=redis, redis_prefix=f"snip-test-{secrets.token_hex(4)}:",
                    visit_flush_interval=0.05)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Snip, Snip]]:
    """Two independent snip instances (as two worker processes would be) on one DB and Redis."""
    settings = _settings(tmp_path, redis_url())
    async with running(settings) as a, running(settings.model_copy()) as b:
        await asyncio.sleep(0.2)  # both subscriptions are up
        yield a, b


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (up to 3 s) until `check()` holds: invalidations travel over pub/sub."""
    async with asyncio.timeout(3.0):
        while not await check():  # noqa: ASYNC110 (polling another process's state)
            await asyncio.sleep(0.05)


async def test_an_edit_in_one_process_reaches_the_others_cache(pair: tuple[Snip, Snip]) -> None:
    a, b = pair
    made = await a.links.create(NewLink(url="https://example.com/before", code="shared1"))
    assert (await b.links.resolve("shared1")).location == "https://example.com/before"  # type: ignore[union-attr]
    await a.links.update(made.link.code, {"url": "https://example.com/after"})

    async def b_sees_it() -> bool:
        target = await b.links.resolve("shared1")
        return target is not None and target.location == "https://example.com/after"

    await _eventually(b_sees_it)
    await a.links.update("shared1", {"disabled": True})

    async def b_sees_disabled() -> bool:
        target = await b.links.resolve("shared1")
        return target is not None and target.disabled

    await _eventually(b_sees_disabled)
    await a.links.delete("shared1")

    async def b_sees_gone() -> bool:
        return await b.links.resolve("shared1") is None

    await _eventually(b_sees_gone)


async def test_a_code_unknown_to_another_process_works_once_created(
    pair: tuple[Snip, Snip],
) -> None:
    a, b = pair
    assert await b.links.resolve("later1") is None  # negative entry in b and in Redis
    await a.links.create(NewLink(url="https://example.com/later", code="later1"))

    async def b_finds_it() -> bool:
        return await b.links.resolve("later1") is not None

    await _eventually(b_finds_it)


async def test_the_shared_tier_answers_without_the_database(pair: tuple[Snip, Snip]) -> None:
    a, b = pair
    await a.links.create(NewLink(url="https://example.com/tier", code="tier1"))
    assert await a.links.resolve("tier1") is not None  # fills a's cache and Redis
    # Remove the row behind snip's back: b can only know the link from Redis now.
    async with a.engine.begin() as conn:
        await conn.execute(delete(links).where(links.c.code == "tier1"))
    target = await b.links.resolve("tier1")
    assert target is not None and target.location == "https://example.com/tier"


async def test_redis_down_falls_back_to_the_database(tmp_path: Path) -> None:
    nothing_listens = free_port()
    settings = _settings(tmp_path, f"redis://127.0.0.1:{nothing_listens}/0")
    async with running(settings) as s:
        made = await s.links.create(NewLink(url="https://example.com/nored"))
        s.cache.clear()
        target = await s.links.resolve(made.link.code)
        assert target is not None and target.location == "https://example.com/nored"
        health = await s.links.health()
        assert health["database"]["status"] == "ok"
        assert health["redis"]["status"] == "unavailable"
