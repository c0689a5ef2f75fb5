"""`snip worker`: drain the Redis click stream into the database (distributed click recording).

Run as many as you like, on any host: they share one consumer group, so each stream entry is
written by one of them; entries a dead worker left pending are claimed by another after
SNIP_CLICKS_CLAIM_IDLE seconds. SIGTERM (or Ctrl-C) finishes the batch in hand, acknowledges
it, and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from snip.config import Settings
from snip.entrypoints.cli_common import settings as read_settings

log = logging.getLogger(__name__)


async def _work(settings: Settings, name: str | None, once: bool) -> int:
    from snip.adapters.redis_stream import StreamConsumer
    from snip.adapters.sql.clicks import SqlClickStore
    from snip.adapters.sql.engine import make_engine
    from snip.adapters.sql.migrate import upgrade_async

    assert settings.redis_url is not None
    if settings.auto_migrate:
        await upgrade_async(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=2,
                         connect_timeout=settings.db_connect_timeout,
                         statement_timeout=max(settings.db_statement_timeout, 30.0),
                         pool_timeout=settings.db_pool_timeout)
    store = SqlClickStore(engine, shards=settings.clicks_counter_shards,
                          keep_clicks=settings.track_clicks)
    consumer = StreamConsumer(settings.redis_url, settings.redis_prefix + settings.clicks_stream,
                              store, name=name, batch_size=settings.clicks_batch_size,
                              block=settings.visit_flush_interval,
                              claim_idle=settings.clicks_claim_idle)
    try:
        await consumer.ensure_group()
        if once:
            await consumer.drain()
        else:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, consumer.stop)
            log.info("click worker %s reading %s", consumer.name,
                     settings.redis_prefix + settings.clicks_stream)
            await consumer.run()
        log.info("click worker %s stopped: %d entries acknowledged, %d new clicks written",
                 consumer.name, consumer.acked, consumer.written)
        return consumer.acked
    finally:
        await consumer.close()
        await engine.dispose()


@click.command()
@click.option("--name", default=None, help="Consumer name (default HOSTNAME-PID)")
@click.option("--once", is_flag=True, help="Write what the stream holds now, then exit")
def worker(name: str | None, once: bool) -> None:
    """Write clicks from the Redis stream to the database (needs SNIP_REDIS_URL)."""
    from snip.entrypoints import logs

    settings = read_settings()
    if not settings.redis_url:
        raise click.ClickException("snip worker needs SNIP_REDIS_URL (the click stream)")
    logs.configure(settings.log_level, settings.log_format)
    done = asyncio.run(_work(settings, name, once))
    if once:
        click.echo(f"{done} clicks written", err=True)
