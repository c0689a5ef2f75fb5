"""The loop behind every in-memory buffer of writes (clicks, visits): write now and then until
told to stop, back off while storage fails, and say so once per outage, not once per try."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from snip.domain.errors import StorageUnavailable


async def keep_writing(write: Callable[[], Awaitable[None]], *, what: str,
                       pending: Callable[[], int], stopping: asyncio.Event,
                       next_delay: Callable[[], float], log: logging.Logger,
                       wake: asyncio.Event | None = None, max_backoff: float = 5.0) -> None:
    """Call `write()` every `next_delay()` seconds, or as soon as `wake` is set, until
    `stopping` is set; a write in progress is never cut short. While writes fail the delay
    doubles up to `max_backoff` and `wake` is ignored (storage needs the rest)."""
    failing = False
    delay = next_delay()
    while True:
        event = stopping if failing or wake is None else wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=delay)
        if stopping.is_set():
            return
        try:
            await write()
        except StorageUnavailable:
            if not failing:  # one line per outage, not one per try
                log.warning("%s cannot be written (storage unavailable); kept in memory, "
                            "%d pending", what, pending())
            failing = True
        except Exception:
            log.exception("%s write failed; kept for the next try", what)
            failing = True
        else:
            if failing:
                log.info("%s written again after a failure", what)
            failing = False
        delay = min(delay * 2, max_backoff) if failing else next_delay()


async def write_all(flush: Callable[[], Awaitable[None]], *, what: str,
                    pending: Callable[[], int], log: logging.Logger, tries: int = 3) -> None:
    """`flush()` at exit, tried `tries` times half a second apart and more; raises the last
    failure, logged with what is lost."""
    for attempt in range(tries):
        try:
            await flush()
            return
        except Exception:
            if attempt == tries - 1:
                log.exception("%d %s could not be written before exit", pending(), what)
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
