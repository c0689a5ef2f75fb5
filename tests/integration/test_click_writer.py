"""The embedded click writer in one event loop: a "worker" recorder captures clicks and sends them
over a real Unix socket to a `WriterServer`, which classifies and writes them to a real database.

What an operator relies on: every click forwarded is stored once, classified as the worker
itself would have; a frame cut short stores nothing of itself; a worker that cannot reach the
writer writes its clicks itself and goes back to the writer once it listens again; and a writer
that falls behind stops reading, so the pressure (and the drop count) lands on the worker's
bounded queue rather than on the writer's memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from snip.adapters.click_writer import HEADER, RETRY_AFTER, WriterClient, WriterServer, frame
from snip.adapters.sql.clicks import SqlClickStore
from snip.adapters.sql.schema import clicks
from snip.bootstrap import ClickWriter, Snip, build_click_writer, running
from snip.config import Settings
from snip.domain.clicks import Click
from snip.domain.errors import StorageUnavailable
from snip.service_layer.clicks import (
    ClickEnricher,
    ClickRecorder,
    Raw,
    Scope,
    capture,
    capture_request,
)
from snip.service_layer.links import NewLink

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
# What a click row is made of, but for its id and time (drawn when it is classified).
CLASSIFIED = ("code", "referrer_host", "referrer", "user_agent", "browser", "os", "device",
              "is_bot", "bot_reason", "ip", "country")
WAIT = 10.0  # seconds any poll below may take, at most


def scope(method: str = "GET", *, agent: str | None = CHROME, referrer: str | None = None,
          peer: str = "203.0.113.7", purpose: str | None = None) -> Scope:
    """An ASGI HTTP scope as the redirect sees it, with headers a click must not carry too."""
    headers = [(b"host", b"snip.test"), (b"cookie", b"session=secret"),
               (b"accept", b"text/html")]
    if agent is not None:
        headers.append((b"user-agent", agent.encode()))
    if referrer is not None:
        headers.append((b"referer", referrer.encode()))
    if purpose is not None:
        headers.append((b"sec-purpose", purpose.encode()))
    return {"type": "http", "method": method, "path": "/x", "client": (peer, 51234),
            "headers": headers}


# A varied traffic: a person from a news site, another browser and address, a HEAD, a prefetch,
# a link-preview bot, a script without user agent, an IPv6 peer.
TRAFFIC: list[tuple[Scope, bool]] = [
    (scope(referrer="https://news.example.org/x?y=1"), True),
    (scope(agent=FIREFOX, peer="198.51.100.23", referrer="https://a.example.com/"), True),
    (scope("HEAD"), True),
    (scope(purpose="prefetch"), True),
    (scope(agent="Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), True),
    (scope(agent=None, peer="192.0.2.1"), True),
    (scope(peer="2001:db8:1:2::9"), False),
]


def classified(row: Any) -> tuple[Any, ...]:
    return tuple(getattr(row, name) if isinstance(row, Click) else row[name]
                 for name in CLASSIFIED)


async def stored(snip: Snip, code: str) -> list[Any]:
    async with snip.engine.connect() as conn:
        return list((await conn.execute(select(clicks).where(clicks.c.code == code))).mappings())


async def stored_count(snip: Snip, code: str) -> int:
    async with snip.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(clicks)
                                     .where(clicks.c.code == code)) or 0)


async def until(value: Callable[[], Awaitable[Any]], wanted: Any) -> None:
    """Poll `value()` until it equals `wanted`, for WAIT s at most."""
    deadline = time.monotonic() + WAIT
    while (got := await value()) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"{got} after {WAIT} s, not {wanted}")
        await asyncio.sleep(0.02)


async def new_link(snip: Snip, name: str) -> str:
    return (await snip.links.create(NewLink(url=f"https://example.com/{name}"))).link.code


def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "w.sock")


async def listen(writer: ClickWriter, tmp_path: Path) -> tuple[str, asyncio.AbstractServer]:
    """The writer's socket, served as `snip.entrypoints.click_writer` serves it."""
    path = socket_path(tmp_path)
    return path, await asyncio.start_unix_server(writer.server.handle, path=path)


async def stop(listening: asyncio.AbstractServer, writer: ClickWriter) -> None:
    """Stop as the writer process does: no new connections, every open one read to its end,
    then what the writer still holds written."""
    listening.close()
    assert await writer.server.wait_closed(WAIT)
    await writer.close()


@pytest.fixture
def enricher() -> ClickEnricher:
    """The in-process enricher with snip's defaults (anonymised addresses, socket peer)."""
    return ClickEnricher()


@pytest.fixture
async def writer(settings: Settings, services: Snip) -> AsyncIterator[ClickWriter]:
    """The click-writer process's parts (as `snip.entrypoints.click_writer` builds them), on
    the test's migrated database; started, and closed at the end."""
    made = build_click_writer(settings)
    made.start()
    try:
        yield made
    finally:
        made.server.cancel()
        await made.close()


def worker(client: WriterClient, **sizes: Any) -> ClickRecorder:
    """An HTTP worker's recorder in the embedded mode (as `bootstrap._click_pipeline` makes it)."""
    return ClickRecorder(client, capture=capture_request, **sizes)


# -- clicks reach the database through the writer -------------------------------------------------


async def test_forwarded_clicks_are_stored_once_classified_as_in_process(
        services: Snip, writer: ClickWriter, enricher: ClickEnricher, tmp_path: Path) -> None:
    path, listening = await listen(writer, tmp_path)
    code = await new_link(services, "through-the-writer")
    client = WriterClient(path, SqlClickStore(services.engine), enricher.captured)
    recorder = worker(client, batch_size=20, batch_age=0.05)
    recorder.start()
    expected: Counter[tuple[Any, ...]] = Counter()
    rounds = 15
    for _ in range(rounds):
        for request, counted in TRAFFIC:
            recorder.record(code, request, counted)
            raw: Raw = (code, time.time(), request, counted)
            expected[classified(enricher(raw))] += 1
        await asyncio.sleep(0.01)
    total = rounds * len(TRAFFIC)
    await recorder.close()  # the worker's last batches are on the socket
    assert (recorder.written, recorder.dropped, recorder.pending) == (total, 0, 0)
    assert (client.forwarded, client.fallback_written) == (total, 0)

    await until(lambda: stored_count(services, code), total)
    await client.close()
    await stop(listening, writer)

    rows = await stored(services, code)
    assert len(rows) == total
    assert len({row["id"] for row in rows}) == total  # each click once
    assert Counter(classified(row) for row in rows) == expected
    # Spelled out for the first kind of request: what the dashboard will show.
    chrome = next(row for row in rows if row["referrer_host"] == "news.example.org")
    assert (chrome["browser"], chrome["os"], chrome["device"]) == ("Chrome", "Windows", "desktop")
    assert (chrome["is_bot"], chrome["bot_reason"]) == (False, None)
    assert chrome["referrer"] == "https://news.example.org/x?y=1"
    assert chrome["ip"] == "203.0.113.0"  # anonymised, as in the worker
    assert {row["ip"] for row in rows} >= {"198.51.100.0", "192.0.2.0", "2001:db8:1::"}
    # A visit is a GET counted by the redirect: not HEAD, not the uncounted one.
    counted = sum(counted and request["method"] == "GET" for request, counted in TRAFFIC)
    assert (await services.links.get(code)).visits == rounds * counted
    assert writer.server.bad_frames == 0
    assert writer.recorder.dropped == 0


async def test_several_workers_share_one_writer(services: Snip, writer: ClickWriter,
                                                enricher: ClickEnricher, tmp_path: Path) -> None:
    path, listening = await listen(writer, tmp_path)
    code = await new_link(services, "shared-writer")
    clients = [WriterClient(path, SqlClickStore(services.engine), enricher.captured) for _ in range(3)]
    recorders = [worker(c, batch_size=25, batch_age=0.02) for c in clients]
    for recorder in recorders:
        recorder.start()
    for i in range(300):
        recorders[i % 3].record(code, scope(), True)
        if i % 40 == 0:
            await asyncio.sleep(0.01)
    for recorder in recorders:
        await recorder.close()
    assert [c.forwarded for c in clients] == [100, 100, 100]
    await until(lambda: stored_count(services, code), 300)
    for c in clients:
        await c.close()
    await stop(listening, writer)
    assert await stored_count(services, code) == 300
    assert (await services.links.get(code)).visits == 300


# -- a frame cut short ----------------------------------------------------------------------------


async def test_a_frame_cut_short_is_discarded_whole_and_the_writer_keeps_serving(
        services: Snip, writer: ClickWriter, enricher: ClickEnricher, tmp_path: Path) -> None:
    path, listening = await listen(writer, tmp_path)
    whole = await new_link(services, "whole")
    cut = await new_link(services, "cut")

    # A worker dies mid-frame: one whole frame, then a header and half of the next payload.
    _reader, stream = await asyncio.open_unix_connection(path)
    stream.write(frame([capture((whole, time.time(), scope(), True)) for _ in range(5)]))
    broken = frame([capture((cut, time.time(), scope(), True)) for _ in range(40)])
    size = int.from_bytes(broken[:HEADER], "big")
    stream.write(broken[:HEADER + size // 2])
    await stream.drain()
    stream.close()
    await stream.wait_closed()
    await until(lambda: stored_count(services, whole), 5)

    # The writer still takes other connections (a worker that connects afterwards).
    client = WriterClient(path, SqlClickStore(services.engine), enricher.captured)
    recorder = worker(client, batch_size=10, batch_age=0.05)
    recorder.start()
    for _ in range(12):
        recorder.record(whole, scope(), True)
    await recorder.close()
    assert (client.forwarded, client.fallback_written) == (12, 0)
    await until(lambda: stored_count(services, whole), 17)
    await client.close()
    await stop(listening, writer)

    assert await stored_count(services, cut) == 0  # nothing of the frame cut short
    assert (await services.links.get(cut)).visits == 0
    assert await stored_count(services, whole) == 17
    assert (await services.links.get(whole)).visits == 17
    assert writer.server.frames == 3  # the whole one and the later worker's two
    assert writer.server.bad_frames == 0  # cut short is not unreadable: it never arrived


async def test_an_unreadable_frame_is_skipped_and_the_next_one_read(
        services: Snip, writer: ClickWriter, tmp_path: Path) -> None:
    path, listening = await listen(writer, tmp_path)
    code = await new_link(services, "after-garbage")
    _reader, stream = await asyncio.open_unix_connection(path)
    garbage = b"\xff not marshal"
    stream.write(len(garbage).to_bytes(HEADER, "big") + garbage)
    stream.write(frame([capture((code, time.time(), scope(), True)) for _ in range(3)]))
    await stream.drain()
    stream.close()
    await stream.wait_closed()
    await until(lambda: stored_count(services, code), 3)
    listening.close()
    assert await writer.server.wait_closed(WAIT)
    assert (writer.server.frames, writer.server.bad_frames) == (1, 1)


# -- no writer: the worker writes itself, then goes back to the writer ----------------------------


async def test_without_a_writer_the_worker_writes_itself_then_returns_to_the_writer(
        services: Snip, writer: ClickWriter, enricher: ClickEnricher, tmp_path: Path) -> None:
    path = socket_path(tmp_path)  # nothing listens here yet
    code = await new_link(services, "fallback")
    client = WriterClient(path, SqlClickStore(services.engine), enricher.captured)

    first = [capture((code, time.time(), scope(referrer="https://b.example.net/p"), True))
             for _ in range(8)]
    assert await client.write(first) == 8
    assert (client.forwarded, client.fallback_written) == (0, 8)
    rows = await stored(services, code)  # written by the worker itself, at once
    assert len(rows) == 8
    assert {(r["browser"], r["os"], r["referrer_host"], r["ip"]) for r in rows} == {
        ("Chrome", "Windows", "b.example.net", "203.0.113.0")}
    assert (await services.links.get(code)).visits == 8

    # The writer starts; once RETRY_AFTER has passed, batches go to it again.
    listening = await asyncio.start_unix_server(writer.server.handle, path=path)
    await asyncio.sleep(RETRY_AFTER + 0.2)
    second = [capture((code, time.time(), scope(agent=FIREFOX), True)) for _ in range(5)]
    assert await client.write(second) == 5
    assert (client.forwarded, client.fallback_written) == (5, 8)
    await until(lambda: stored_count(services, code), 13)
    assert writer.server.frames == 1
    await client.close()
    await stop(listening, writer)

    rows = await stored(services, code)
    assert len(rows) == 13 and len({r["id"] for r in rows}) == 13
    assert Counter(r["browser"] for r in rows) == {"Chrome": 8, "Firefox": 5}
    assert (await services.links.get(code)).visits == 13


async def test_a_writer_that_goes_away_sends_the_worker_back_to_writing_itself(
        services: Snip, writer: ClickWriter, enricher: ClickEnricher, tmp_path: Path) -> None:
    path, listening = await listen(writer, tmp_path)
    code = await new_link(services, "gone")
    client = WriterClient(path, SqlClickStore(services.engine), enricher.captured)
    assert await client.write([capture((code, time.time(), scope(), True))] * 4) == 4
    assert client.forwarded == 4
    await until(lambda: stored_count(services, code), 4)

    # The writer stops: no more listening, its connections closed.
    listening.close()
    writer.server.cancel()
    await listening.wait_closed()
    await asyncio.sleep(0.1)
    # The next batch meets a closed socket (EPIPE on a Unix socket): written here, not lost.
    assert await client.write([capture((code, time.time(), scope(), True))] * 6) == 6
    assert (client.forwarded, client.fallback_written) == (4, 6)
    rows = await stored(services, code)
    assert len(rows) == 10 and len({r["id"] for r in rows}) == 10
    assert (await services.links.get(code)).visits == 10


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_writer_killed_with_frames_unread_sends_the_worker_back_to_writing_itself(
        settings: Settings, tmp_path: Path, loop: str) -> None:
    """The writer dies (SIGKILL) while frames wait unread in its socket: the worker's connection
    is reset. Its next batch must be written (here, or to the writer once it is back), on the
    event loop `snip serve` runs (uvloop) as on asyncio's own."""
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    path = socket_path(tmp_path)

    async def scenario() -> None:
        async with running(settings) as snip:
            code = await new_link(snip, f"reset-{loop}")
            accepted: list[asyncio.StreamWriter] = []

            async def stalled(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.transport.pause_reading()  # a writer busy elsewhere: it reads nothing
                accepted.append(writer)

            listening = await asyncio.start_unix_server(stalled, path=path)
            client = WriterClient(path, SqlClickStore(snip.engine), ClickEnricher().captured)
            assert await client.write([capture((code, time.time(), scope(), True))] * 2) == 2
            for _ in range(100):
                if accepted:
                    break
                await asyncio.sleep(0.01)
            assert accepted
            assert await client.write([capture((code, time.time(), scope(), True))]) == 1
            assert client.forwarded == 3  # in the writer's socket, unread
            # The writer is killed: its end closes with data unread (the worker sees a reset).
            listening.close()
            for writer in accepted:
                writer.transport.abort()
            await asyncio.sleep(0.2)

            assert await client.write([capture((code, time.time(), scope(), True))] * 5) == 5
            assert client.fallback_written == 5
            assert await stored_count(snip, code) == 5  # the 3 unread died with the writer

            # A new writer listens: after RETRY_AFTER the worker uses it again.
            writer = build_click_writer(settings)
            writer.start()
            again = await asyncio.start_unix_server(writer.server.handle, path=path)
            await asyncio.sleep(RETRY_AFTER + 0.2)
            assert await client.write([capture((code, time.time(), scope(), True))] * 7) == 7
            assert (client.forwarded, client.fallback_written) == (10, 5)
            await client.close()
            again.close()
            assert await writer.server.wait_closed(WAIT)
            await writer.close()
            assert await stored_count(snip, code) == 12
            assert (await snip.links.get(code)).visits == 12

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(scenario())


# -- back-pressure --------------------------------------------------------------------------------


class GatedStore:
    """The database, behind a gate: while it is shut, writes wait (slow) or fail (unavailable)."""

    def __init__(self, store: SqlClickStore, mode: str) -> None:
        self._store = store
        self._mode = mode
        self.gate = asyncio.Event()

    async def write(self, batch: Sequence[Click]) -> int:
        if not self.gate.is_set():
            if self._mode == "failing":
                raise StorageUnavailable("database away")
            await self.gate.wait()
        return await self._store.write(batch)


@pytest.mark.parametrize("mode", ["slow", "failing"])
async def test_a_writer_behind_stops_reading_and_the_worker_queue_takes_the_pressure(
        services: Snip, enricher: ClickEnricher, tmp_path: Path, mode: str) -> None:
    path = socket_path(tmp_path)
    code = await new_link(services, f"pressure-{mode}")
    sink = GatedStore(SqlClickStore(services.engine), mode)
    behind = ClickRecorder(sink, enricher, queue_size=100, batch_size=50, batch_age=0.02)
    server = WriterServer(behind)
    listening = await asyncio.start_unix_server(server.handle, path=path)
    behind.start()
    client = WriterClient(path, SqlClickStore(services.engine), enricher.captured)
    recorder = worker(client, queue_size=200, batch_size=50, batch_age=0.01)
    recorder.start()
    # Large requests (a 4 KiB user agent, cropped only when classified): a few frames fill the
    # socket's buffers.
    big = scope(agent="Mozilla/5.0 " + "x" * 4096)
    recorded = 0
    try:
        deadline = time.monotonic() + WAIT
        while recorder.dropped == 0:
            assert time.monotonic() < deadline, (
                f"no drop in the worker after {recorded} clicks; writer holds {behind.pending}")
            for _ in range(50):
                recorder.record(code, big, True)
                recorded += 1
            await asyncio.sleep(0.01)
            # The writer holds a bounded number of clicks however many the worker sends.
            assert behind.pending < behind.capacity
        frames_while_behind = server.frames
        await asyncio.sleep(0.3)
        assert server.frames == frames_while_behind  # it reads no more while behind
        assert behind.pending < behind.capacity and behind.dropped == 0
        assert client.fallback_written == 0  # the worker waits; it does not write around it
        assert recorded > 400  # more than both queues and the socket in between can hold
        assert await stored_count(services, code) == 0
    finally:
        sink.gate.set()  # the database catches up

    await recorder.close()
    assert recorder.pending == 0
    # Every click recorded was forwarded or counted as dropped, in the worker; none lost silently.
    assert recorder.dropped + client.forwarded == recorded
    assert client.fallback_written == 0
    await client.close()
    await until(lambda: stored_count(services, code), client.forwarded)
    listening.close()
    assert await server.wait_closed(WAIT)
    await behind.close()
    assert behind.dropped == 0
    assert await stored_count(services, code) == client.forwarded
    assert (await services.links.get(code)).visits == client.forwarded
