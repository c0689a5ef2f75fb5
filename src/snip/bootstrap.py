"""The one wiring place: settings in, a running snip out (the ASGI app, or services for the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from snip.adapters.memory_cache import MemoryRedirectCache
from snip.adapters.metrics import SnipMetrics
from snip.adapters.ratelimit import make_limits
from snip.adapters.redis_cache import RedisSharedCache
from snip.adapters.sql.abuse import SqlAbuseRepository
from snip.adapters.sql.accounts import SqlAccountRepository
from snip.adapters.sql.engine import make_engine
from snip.adapters.sql.instrumented import InstrumentedRepository
from snip.adapters.sql.migrate import upgrade_async
from snip.adapters.sql.repository import SqlLinkRepository
from snip.adapters.sql.stats import SqlClickStats
from snip.config import Settings
from snip.service_layer.abuse import AbuseService
from snip.service_layer.accounts import AccountService
from snip.service_layer.checks import configure as configure_checks
from snip.service_layer.clicks import (
    CaptureSink,
    ClickCapture,
    ClickEnricher,
    ClickRecorder,
    ClickSink,
    Raw,
    capture_request,
)
from snip.service_layer.limits import Limits
from snip.service_layer.links import LinkService
from snip.service_layer.ports import LinkRepository
from snip.service_layer.stats import StatsService
from snip.service_layer.tally import VisitTally

log = logging.getLogger(__name__)

SCRAPE_QUERY_EVERY = 15.0  # seconds between the database queries behind links/size gauges


@dataclass
class Snip:
    """Everything one process needs, built from settings."""

    settings: Settings
    engine: AsyncEngine
    cache: MemoryRedirectCache
    links: LinkService
    clicks: ClickCapture  # a ClickRecorder, or a VisitTally with click tracking off
    shared: RedisSharedCache | None = None
    metrics: SnipMetrics | None = None
    click_consumer: Any = None  # the embedded stream consumer (distributed mode), if any
    click_closeables: list[Any] = field(default_factory=list)  # closed last (Redis, GeoIP)
    accounts: AccountService | None = None  # users, API keys, audit log (issue 5)
    stats: StatsService | None = None  # click stats and retention (issue 4)
    limits: Limits = field(default_factory=Limits)  # rate limits (all off unless built)
    abuse: AbuseService | None = None  # domain blocklist and reports (issue 5)

    async def start(self, *, migrate: bool | None = None) -> None:
        if self.settings.auto_migrate if migrate is None else migrate:
            await upgrade_async(self.settings.database_url)
        self.clicks.start()
        if self.shared is not None:
            # Changes made by other processes reach this process's cache through Redis.
            self.shared.listen(self.cache.invalidate, self.cache.clear)
        if self.abuse is not None:
            await self.abuse.start()  # loads the blocklist and follows its changes
        if self.metrics is not None:
            self.metrics.start()

    async def close(self) -> None:
        if self.abuse is not None:
            await self.abuse.close()
        if self.stats is not None:
            await self.stats.close()  # the scheduled purge, if this process runs one
        try:
            await self.clicks.close()
        except Exception:
            log.exception("could not write the last clicks")
        if self.click_consumer is not None:
            # Writes what this process just put in the stream, if the database takes it. With
            # Redis down the entries stay in the stream for the next consumer: log, go on closing.
            try:
                await self.click_consumer.close(drain=True)
            except Exception:
                log.exception("could not drain the click stream before exit")
        for closeable in self.click_closeables:
            with contextlib.suppress(Exception):
                result = closeable.close()
                if asyncio.iscoroutine(result):
                    await result
        if self.shared is not None:
            await self.shared.close()
        await self.limits.close()
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
    accounts = AccountService(
        SqlAccountRepository(engine), cache_ttl=settings.auth_cache_ttl,
        on_failure=(lambda reason: metrics.auth_failures.labels(reason).inc()) if metrics else None,
    )
    checks = configure_checks(settings)
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
        audit=accounts.record,
        checker=checks.chain,
    )
    clicks, consumer, closeables = _click_pipeline(settings, engine)
    snip = Snip(settings, engine, cache, links, clicks, shared, metrics,
                click_consumer=consumer, click_closeables=closeables)
    snip.accounts = accounts
    snip.limits = make_limits(settings, metrics)
    snip.stats = StatsService(SqlClickStats(engine), links,
                              retention_days=settings.click_retention_days,
                              purge_interval=settings.click_purge_interval)
    snip.abuse = AbuseService(SqlAbuseRepository(engine), links, checks.blocklist,
                              configured=checks.configured, refresh=settings.blocklist_refresh,
                              audit=accounts.record)
    if metrics is not None:
        _observe(snip, metrics)
    return snip


def _click_pipeline(settings: Settings, engine: AsyncEngine
                    ) -> tuple[ClickCapture, Any, list[Any]]:
    """The click recorder: what a redirect's click goes through, by deployment.

    - Redis configured: classified here, added to the click stream (distributed mode). Each
      `snip serve` process also runs a stream consumer unless SNIP_CLICKS_EMBEDDED_WORKER is
      off, so a single host never piles up unconsumed clicks.
    - Served by `snip serve` without Redis: captured here, handed to the click-writer process
      (`snip.entrypoints.click_writer`), which classifies and writes them.
    - Otherwise (SNIP_CLICKS_WRITER=inline, or the app run by another server): classified and
      written from this process.
    """
    from snip.adapters.sql.clicks import SqlClickStore

    store = SqlClickStore(engine, shards=settings.clicks_counter_shards)
    if not settings.track_clicks:
        # No click rows, nothing classified: visits still count, per code, in memory.
        return VisitTally(store, interval=settings.visit_flush_interval), None, []
    enricher, closeables = click_enricher(settings)
    enrich: Callable[[Raw], Any] = enricher
    sink: ClickSink | CaptureSink = store
    consumer = None
    capture = None
    age = settings.visit_flush_interval
    if settings.redis_url:
        from snip.adapters.redis_stream import RedisClickSink, StreamConsumer

        stream = settings.redis_prefix + settings.clicks_stream
        redis_sink = RedisClickSink(settings.redis_url, stream, store)
        closeables.append(redis_sink)
        sink = redis_sink
        if settings.clicks_embedded_worker:
            consumer = StreamConsumer(settings.redis_url, stream, store,
                                      batch_size=settings.clicks_batch_size,
                                      block=settings.visit_flush_interval,
                                      claim_idle=settings.clicks_claim_idle)
    elif settings.clicks_writer_socket:
        from snip.adapters.click_writer import WriterClient

        writer = WriterClient(settings.clicks_writer_socket, store, enricher.captured)
        closeables.insert(0, writer)  # closed first: its last frames go before the rest
        sink, capture = writer, capture_request
        # Handing a batch on is cheap: do it soon, so a click waits for one batch age (the
        # writer's), not two.
        age = min(age, FORWARD_AGE)
    recorder = ClickRecorder(sink, enrich, queue_size=settings.clicks_queue_size,
                             batch_size=settings.clicks_batch_size, batch_age=age, capture=capture)
    return recorder, consumer, closeables


FORWARD_AGE = 0.1  # seconds a worker holds captured clicks before handing them to the writer
WRITER_BATCH = 100_000  # clicks per transaction in the click-writer process, at most


@dataclass
class ClickWriter:
    """The click-writer process's parts (`snip.entrypoints.click_writer`): one recorder fed by
    every HTTP worker, classifying and writing to the database in batches."""

    engine: AsyncEngine
    recorder: ClickRecorder
    server: Any  # snip.adapters.click_writer.WriterServer
    metrics: SnipMetrics | None
    closeables: list[Any]

    def start(self) -> None:
        self.recorder.start()
        if self.metrics is not None:
            self.metrics.start()

    async def close(self) -> None:
        try:
            await self.recorder.close()
        except Exception:
            log.exception("could not write the last clicks")
        if self.metrics is not None:
            await self.metrics.close()
        for closeable in self.closeables:
            with contextlib.suppress(Exception):
                closeable.close()
        await self.engine.dispose()


def build_click_writer(settings: Settings, *, batch_size: int = WRITER_BATCH) -> ClickWriter:
    """The click-writer process's parts; `batch_size`: clicks per transaction, at most (another
    value only for bench/clicks)."""
    from snip.adapters.click_writer import WriterServer
    from snip.adapters.sql.clicks import SqlClickStore

    engine = make_engine(settings.database_url, pool_size=2,
                         connect_timeout=settings.db_connect_timeout,
                         statement_timeout=max(settings.db_statement_timeout, 30.0),
                         pool_timeout=settings.db_pool_timeout)
    store = SqlClickStore(engine, shards=settings.clicks_counter_shards, large_batches=True)
    enrich, closeables = click_enricher(settings)
    # Large batches in one transaction each: on SQLite the index work per click falls by half
    # (docs/performance.md, "Click recording cost"). A batch is what arrived in one batch age
    # (SNIP_VISIT_FLUSH_INTERVAL), so a writer that keeps up writes about a second of clicks at
    # a time; one that falls behind (a write takes longer than the age, as on a large table)
    # takes all that waited, up to `batch_size`, and pays less per click, so it catches up.
    # Its queue holds what the workers captured (`Captured`), classified as written; the
    # socket handler stops reading at half of it, so a batch can reach `batch_size`.
    recorder = ClickRecorder(store, enrich.captured, batch_size=batch_size,
                             queue_size=max(settings.clicks_queue_size, 2 * batch_size),
                             batch_age=settings.visit_flush_interval)
    metrics = None
    if settings.metrics_enabled and settings.metrics_dir:  # the workers' scrapes merge it in
        metrics = SnipMetrics(Path(settings.metrics_dir))
        queue, lag = metrics.clicks_queue.labels(), metrics.clicks_lag.labels()
        written, dropped = metrics.clicks_written.labels(), metrics.clicks_dropped.labels()

        def refresh() -> None:
            queue.set(recorder.pending)
            lag.set(recorder.lag())
            written.value = float(recorder.written)
            dropped.value = float(recorder.dropped)

        metrics.before_write(refresh)
    return ClickWriter(engine, recorder, WriterServer(recorder), metrics, closeables)


def click_enricher(settings: Settings) -> tuple[ClickEnricher, list[Any]]:
    """What classifies clicks, per the settings (GeoIP, trusted proxies, address tracking); and
    what must be closed with it."""
    from snip.entrypoints.clients import ClientAddresses, parse_networks

    closeables: list[Any] = []
    country_of = None
    if settings.geoip_db:
        from snip.adapters.geoip import GeoIP

        geoip = GeoIP(settings.geoip_db)
        closeables.append(geoip)
        country_of = geoip.country_of
    proxies = parse_networks(settings.trusted_proxies)
    enrich = ClickEnricher(
        ip_tracking=settings.ip_tracking,
        # Without trusted proxies the socket peer is the client: no header walk, no parsing.
        client_of=ClientAddresses(proxies).of if proxies else None,
        country_of=country_of,
    )
    return enrich, closeables


def _observe(snip: Snip, metrics: SnipMetrics) -> None:
    """Gauges read from live state: before each snapshot, and at scrape time."""
    from snip.adapters.click_writer import WriterClient

    pool: Any = snip.engine.pool
    in_use, size = metrics.db_pool_in_use.labels(), metrics.db_pool_size.labels()
    queue, lag = metrics.clicks_queue.labels(), metrics.clicks_lag.labels()
    written, dropped = metrics.clicks_written.labels(), metrics.clicks_dropped.labels()

    def refresh() -> None:
        in_use.set(pool.checkedout())
        size.set(pool.size())
        queue.set(snip.clicks.pending)
        lag.set(snip.clicks.lag())
        # Clicks forwarded to the click-writer process are counted there, when written.
        sink = getattr(snip.clicks, "sink", None)
        written.value = float(sink.fallback_written if isinstance(sink, WriterClient)
                              else snip.clicks.written)
        dropped.value = float(snip.clicks.dropped)

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
    from snip.entrypoints.limits import RateLimitHeaders, client_keys
    from snip.entrypoints.observe import ObservedApp, RequestIds
    from snip.entrypoints.redirect import RedirectApp
    from snip.service_layer.limits import enabled

    snip = build(settings)
    settings = snip.settings
    logs.configure(settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await snip.start()
        if snip.stats is not None:
            snip.stats.start_purging()  # servers purge old clicks; one-off CLI calls do not
        if snip.click_consumer is not None:  # only servers consume the click stream, not the CLI
            snip.click_consumer.start()
        if snip.abuse is not None:  # servers apply SNIP_BLOCKLIST(_FILE); one-off CLI calls do not
            await snip.abuse.sync_configured()
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
    api.state.client_keys = keys = client_keys(settings)  # limiter keys: client address, /64
    ids = RequestIds()
    observed = ObservedApp(RateLimitHeaders(api), snip.metrics, ids,
                           access_log_enabled=settings.access_log)
    app = RedirectApp(observed, snip.links, snip.cache, snip.clicks,
                      permanent_max_age=settings.permanent_redirect_max_age,
                      metrics=snip.metrics, ids=ids, access_log_enabled=settings.access_log,
                      not_found_limiter=enabled(snip.limits.not_found), limit_key=keys)
    app.state = api.state  # type: ignore[attr-defined]
    return app


def app_factory() -> Any:
    """Entry for ASGI servers (`granian --factory snip.bootstrap:app_factory`)."""
    return create_app()
