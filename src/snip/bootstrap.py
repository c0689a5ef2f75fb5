"""The one wiring place: settings in, a running snip out (the ASGI app, or services for the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from snip.adapters.memory_cache import MemoryRedirectCache
from snip.adapters.metrics import SnipMetrics
from snip.adapters.redis_cache import RedisSharedCache
from snip.adapters.sql.engine import make_engine
from snip.adapters.sql.instrumented import InstrumentedRepository
from snip.adapters.sql.migrate import upgrade_async
from snip.adapters.sql.repository import SqlLinkRepository
from snip.config import Settings
from snip.service_layer.links import LinkService
from snip.service_layer.ports import LinkRepository
from snip.service_layer.visits import VisitCounter

log = logging.getLogger(__name__)

SCRAPE_QUERY_EVERY = 15.0  # seconds between the database queries behind links/size gauges


@dataclass
class Snip:
    """Everything one process needs, built from settings."""

    settings: Settings
    engine: AsyncEngine
    cache: MemoryRedirectCache
    links: LinkService
    visits: VisitCounter
    shared: RedisSharedCache | None = None
    metrics: SnipMetrics | None = None

    async def start(self, *, migrate: bool | None = None) -> None:
        if self.settings.auto_migrate if migrate is None else migrate:
            await upgrade_async(self.settings.database_url)
        self.visits.start()
        if self.shared is not None:
            # Changes made by other processes reach this process's cache through Redis.
            self.shared.listen(self.cache.invalidate, self.cache.clear)
        if self.metrics is not None:
            self.metrics.start()

    async def close(self) -> None:
        try:
            await self.visits.close()
        except Exception:
            log.exception("could not write the last visit counts")
        if self.shared is not None:
            await self.shared.close()
        if self.metrics is not None:
            await self.metrics.close()
        await self.engine.dispose()


def build(settings: Settings | None = None) -> Snip:
    settings = settings or Settings()
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
        pool_timeout=settings.db_pool_timeout,
    )
    metrics = (
        SnipMetrics(Path(settings.metrics_dir) if settings.metrics_dir else None)
        if settings.metrics_enabled
        else None
    )
    sql = SqlLinkRepository(engine)
    repo: LinkRepository = InstrumentedRepository(sql, metrics) if metrics else sql
    cache = MemoryRedirectCache(settings.cache_size, settings.cache_ttl,
                                settings.negative_cache_ttl)
    shared = (
        RedisSharedCache(settings.redis_url, ttl=settings.redis_cache_ttl,
                         negative_ttl=settings.negative_cache_ttl, timeout=settings.redis_timeout,
                         prefix=settings.redis_prefix, metrics=metrics)
        if settings.redis_url
        else None
    )
    links = LinkService(
        repo,
        cache,
        base_url=settings.base_url,
        code_length=settings.code_length,
        custom_code_max_length=settings.custom_code_max_length,
        default_redirect_status=settings.default_redirect_status,
        reuse_default=settings.reuse_default,
        max_url_bytes=settings.max_url_bytes,
        shared=shared,
    )
    visits = VisitCounter(repo, settings.visit_flush_interval)
    snip = Snip(settings, engine, cache, links, visits, shared, metrics)
    if metrics is not None:
        _observe(snip, metrics)
    return snip


def _observe(snip: Snip, metrics: SnipMetrics) -> None:
    """Gauges read from live state: before each snapshot, and at scrape time."""
    pool: Any = snip.engine.pool
    in_use, size = metrics.db_pool_in_use.labels(), metrics.db_pool_size.labels()
    queue, lag = metrics.clicks_queue.labels(), metrics.clicks_lag.labels()
    written = metrics.clicks_written.labels()

    def refresh() -> None:
        in_use.set(pool.checkedout())
        size.set(pool.size())
        queue.set(snip.visits.pending)
        lag.set(snip.visits.lag())
        written.value = float(snip.visits.written)

    metrics.before_write(refresh)
    last_query = [float("-inf")]

    async def scrape() -> None:
        health = await snip.links.health()
        metrics.db_up.labels().set(1.0 if health["database"]["status"] == "ok" else 0.0)
        if "redis" in health:
            metrics.redis_up.labels().set(1.0 if health["redis"]["status"] == "ok" else 0.0)
        now = asyncio.get_running_loop().time()
        if health["database"]["status"] == "ok" and now - last_query[0] >= SCRAPE_QUERY_EVERY:
            last_query[0] = now
            total, size_bytes = await snip.links.stats()
            metrics.links_total.labels().set(total)
            if size_bytes is not None:
                metrics.db_size.labels().set(size_bytes)

    metrics.on_scrape(scrape)


@contextlib.asynccontextmanager
async def running(settings: Settings | None = None, *, migrate: bool | None = None
                  ) -> AsyncIterator[Snip]:
    """For the CLI and tests: a started snip, closed (visits flushed) on exit."""
    snip = build(settings)
    await snip.start(migrate=migrate)
    try:
        yield snip
    finally:
        await snip.close()


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application: the redirect hot path in front of the FastAPI app."""
    from snip.entrypoints import logs
    from snip.entrypoints.api import create_api
    from snip.entrypoints.observe import ObservedApp, RequestIds
    from snip.entrypoints.redirect import RedirectApp

    snip = build(settings)
    settings = snip.settings
    logs.configure(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await snip.start()
        # Everything built so far lives as long as the process: keep it out of the collector's
        # way, so garbage collection on the hot path only walks per-request objects.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await snip.close()

    api = create_api(snip.links, metrics=snip.metrics, metrics_token=settings.metrics_token,
                     lifespan=lifespan)
    api.state.snip = snip
    ids = RequestIds()
    observed = ObservedApp(api, snip.metrics, ids, access_log_enabled=settings.access_log)
    app = RedirectApp(observed, snip.links, snip.cache, snip.visits,
                      permanent_max_age=settings.permanent_redirect_max_age,
                      metrics=snip.metrics, ids=ids, access_log_enabled=settings.access_log)
    app.state = api.state  # type: ignore[attr-defined]
    return app


def app_factory() -> Any:
    """Entry for ASGI servers (`granian --factory snip.bootstrap:app_factory`)."""
    return create_app()
