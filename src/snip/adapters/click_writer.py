"""The embedded click writer: HTTP workers hand captured clicks to one writer process.

In the embedded default (no Redis), `snip serve` starts one click-writer process beside its
HTTP workers (`snip.entrypoints.click_writer`). A worker's recorder captures each click (a few
headers, no parsing) and sends batches over a Unix socket; the writer classifies them (user
agent, bot, referrer, client address, country) and writes them to the database in batches. So
the redirect's process pays neither for classifying nor for the database's index work, which
on SQLite costs more than the redirect itself (docs/performance.md, "Click recording cost"),
and one process, not every worker, writes to SQLite.

The wire: a frame is a 4-byte big-endian length and a `marshal`-ed list of `Captured` tuples.
The socket lives in a directory only snip's user can enter (0700); only snip's own processes
connect to it.

Failure: a worker that cannot reach the writer (not started, restarting after a crash, or not
reading for SEND_TIMEOUT seconds) writes the batch itself, classified, straight to the database
(as `RedisClickSink` does when Redis is away), and tries the writer again a second later. A
frame is processed whole or not at all, so a batch is written by one side only. What the writer
held in memory when it was killed (at most its queue) is lost with it, as a worker's queue is
when a worker is killed; a clean stop (SIGTERM to `snip serve`) loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from snip.service_layer.clicks import Captured, ClickRecorder, ClickSink

log = logging.getLogger(__name__)

HEADER = 4
CAPTURED_FIELDS = 6  # (code, time, method, client, headers, counted)
MAX_FRAME = 64 * 1024 * 1024  # far above a batch (1,000 clicks of a few hundred bytes)
RETRY_AFTER = 1.0  # seconds between tries to reach a writer that could not be reached
SEND_TIMEOUT = 10.0  # seconds a batch may wait for a writer that is behind


def _pending(listening: socket.socket) -> bool:
    """Whether connections wait in the listening socket's queue, not yet accepted."""
    poller = select.poll()
    poller.register(listening.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def frame(batch: Sequence[Captured]) -> bytes:
    payload = marshal.dumps(list(batch), 4)
    return len(payload).to_bytes(HEADER, "big") + payload


class WriterClient:
    """`CaptureSink` for an HTTP worker: batches go to the click-writer process's socket;
    while it cannot be reached they are classified here and written to `fallback`."""

    def __init__(self, path: str, fallback: ClickSink, enrich: Callable[[Captured], Any]) -> None:
        self._path = path
        self._fallback = fallback
        self._enrich = enrich
        self._stream: asyncio.StreamWriter | None = None
        self._next_try = 0.0
        self._failing = False
        self.forwarded = 0  # clicks handed to the writer process
        self.fallback_written = 0  # clicks this process wrote itself

    async def _connect(self) -> asyncio.StreamWriter | None:
        if self._stream is not None and self._stream.is_closing():
            self._drop(ConnectionResetError("the click writer closed the connection"))
        if self._stream is not None:
            return self._stream
        if time.monotonic() < self._next_try:
            return None
        try:
            _reader, self._stream = await asyncio.open_unix_connection(self._path)
        except OSError as exc:
            self._next_try = time.monotonic() + RETRY_AFTER
            if not self._failing:
                log.warning("click writer unreachable at %s (%s); writing clicks to the database "
                            "from this process", self._path, exc)
                self._failing = True
            return None
        if self._failing:
            log.info("clicks go to the click writer again")
            self._failing = False
        return self._stream

    async def write(self, batch: Sequence[Captured]) -> int:
        if not batch:
            return 0
        stream = await self._connect()
        if stream is not None:
            try:
                stream.write(frame(batch))
                # Waits while the writer is behind (back-pressure), but not for ever: a writer
                # that stopped reading is as good as gone.
                await asyncio.wait_for(stream.drain(), SEND_TIMEOUT)
            # (uvloop raises RuntimeError for a write on a transport the peer has closed.)
            except (OSError, ConnectionError, TimeoutError, RuntimeError) as exc:
                # Some of this frame is unsent (earlier frames were drained), so the writer
                # cannot have it whole and discards it: this batch is written here, once.
                self._drop(exc)
            else:
                self.forwarded += len(batch)
                return len(batch)
        clicks = [self._enrich(item) for item in batch]
        await self._fallback.write(clicks)
        self.fallback_written += len(clicks)
        return len(batch)

    def _drop(self, exc: BaseException) -> None:
        log.warning("lost the click writer (%s); writing clicks to the database from this "
                    "process until it is back", exc or type(exc).__name__)
        self._failing = True
        self._next_try = time.monotonic() + RETRY_AFTER
        if self._stream is not None:
            self._stream.transport.abort()  # unsent bytes are dropped, not sent late
        self._stream = None

    async def close(self) -> None:
        """Close the connection after everything written to it has gone (the writer reads
        to the end before it stops)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
            with contextlib.suppress(OSError, ConnectionError):
                await stream.wait_closed()


class WriterServer:
    """The click-writer process's side: reads frames from every worker into one recorder."""

    def __init__(self, recorder: ClickRecorder) -> None:
        self._recorder = recorder
        self._handlers: set[asyncio.Task[None]] = set()
        self.frames = 0
        self.bad_frames = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        recorder = self._recorder
        high_water = max(1, recorder.capacity // 2)
        try:
            while True:
                try:
                    size = int.from_bytes(await reader.readexactly(HEADER), "big")
                    if size > MAX_FRAME:
                        raise ValueError(f"frame of {size} bytes")
                    payload = await reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    return  # the worker closed its end (a frame cut short is not processed)
                try:
                    # Only snip's own processes reach this socket (a 0700 directory).
                    items = marshal.loads(payload)  # noqa: S302
                    if type(items) is not list or not all(
                            type(i) is tuple and len(i) == CAPTURED_FIELDS for i in items):
                        raise ValueError("not a list of captured clicks")
                except (ValueError, TypeError, EOFError):
                    self.bad_frames += 1
                    log.error("discarded an unreadable click frame of %d bytes", size)
                    continue
                self.frames += 1
                recorder.accept(items)
                # Behind: stop reading, so the worker's socket fills and its own bounded queue
                # takes the pressure (and counts drops) rather than this process's memory.
                await recorder.room(high_water)
        except (OSError, ConnectionError) as exc:
            log.warning("a click connection failed: %s", exc)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def wait_closed(self, seconds: float) -> bool:
        """Wait until every open connection has been read to its end (True), or `seconds`
        pass."""
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=seconds)
        return not self._handlers

    async def drain(self, listening: socket.socket, seconds: float) -> bool:
        """Wait until every connection, open or still waiting to be accepted, has been read to
        its end (True), or `seconds` pass. A worker that sent its last frames and exited may
        not have been accepted yet when the writer is told to stop."""
        deadline = time.monotonic() + seconds
        while self._handlers or _pending(listening):
            if time.monotonic() >= deadline:
                return False
            if not await self.wait_closed(0.05):
                continue
            await asyncio.sleep(0.01)  # the loop accepts what is waiting
        return True

    def cancel(self) -> None:
        for task in list(self._handlers):
            task.cancel()
