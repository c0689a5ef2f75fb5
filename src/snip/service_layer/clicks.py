"""The click recorder: the redirect appends a click to a bounded queue; a background task writes.

`record()` is the only part on the hot path: a length check and a deque append of what the
request already holds (code, time, the ASGI scope). Everything else (user-agent parsing, bot
detection, the client address through trusted proxies, anonymising, GeoIP) happens in the
writer, in batches, off the request. A batch goes to a `ClickSink`: the database directly, or a
Redis stream that `snip worker` drains (distributed mode).

Guarantees (kept from the visit counter this replaces):
- a failed write keeps its batch, in order, for the next try; so does a write cancelled midway;
- `close()` lets a write in progress finish, then writes everything still queued;
- the queue is bounded (`SNIP_CLICKS_QUEUE_SIZE`, batches waiting for a retry included): when
  it is full a click is counted in `dropped` (`snip_clicks_dropped_total`), never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from time import time
from typing import Any, Protocol

from snip.domain.clicks import (
    Agent,
    Click,
    IpTracking,
    bot_reason,
    classify_agent,
    crop_agent,
    new_click_id,
    split_referrer,
    tracked_ip,
)
from snip.domain.errors import StorageUnavailable
from snip.service_layer.writing import keep_writing, write_all

log = logging.getLogger(__name__)

Scope = dict[str, Any]
# What the redirect captures: (code, time, ASGI scope, counted).
Raw = tuple[str, float, Scope, bool]
# A capture reduced to what classifying needs, in plain values (`marshal`-able) so that another
# process can classify it: (code, time, method, socket peer, the headers below, counted).
Captured = tuple[str, float, str, tuple[str, int] | None, Sequence[tuple[bytes, bytes]], bool]
# The request headers a click is made of: the agent, the referrer, prefetch hints, and the
# proxy headers a trusted proxy sets (`snip.entrypoints.clients`). Nothing else leaves.
CAPTURED_HEADERS = frozenset({b"user-agent", b"referer", b"sec-purpose", b"purpose",
                              b"forwarded", b"x-forwarded-for"})
YIELD_EVERY = 50  # clicks classified between two yields to the event loop
MAX_REFUSALS = 5  # a batch storage refuses (not: is unavailable) this often is dropped, counted


class ClickSink(Protocol):
    """Where batches of clicks go: the database, or a stream that a worker drains into it."""

    async def write(self, batch: Sequence[Click]) -> int:
        """Store `batch` (idempotent on click ids); how many clicks were accepted."""


class ClickCapture(Protocol):
    """What a redirect hands its click to: `ClickRecorder`, or `VisitTally` when click tracking
    is off (`snip.service_layer.tally`). `record()` never waits and never raises."""

    written: int

    def record(self, code: str, scope: Scope, counted: bool) -> None: ...

    @property
    def pending(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    def lag(self) -> float: ...

    def start(self) -> None: ...

    async def flush(self) -> None: ...

    async def close(self, *, tries: int = 3) -> None: ...


class CaptureSink(Protocol):
    """Where captured (unclassified) clicks go: a click-writer process, which classifies them."""

    async def write(self, batch: Sequence[Captured]) -> int:
        """Hand `batch` on; how many clicks were accepted."""


class ClickEnricher:
    """Turns a captured request into a `Click`: headers, client address, privacy, country."""

    def __init__(self, *, ip_tracking: IpTracking = "anonymized",
                 client_of: Callable[[Scope], str | None] | None = None,
                 country_of: Callable[[str], str | None] | None = None) -> None:
        self._ip_tracking = ip_tracking
        self._client_of = client_of or _socket_peer
        self._country_of = country_of
        self._ips: dict[str, str] = {}  # address -> as kept ("" for nothing)

    def __call__(self, raw: Raw) -> Click:
        code, at, scope, counted = raw
        return self._click(code, at, scope.get("method", "GET"),
                           *_click_headers(scope.get("headers", ())), self._client_of(scope),
                           counted)

    def captured(self, item: Captured) -> Click:
        """`self(restore(item))`, without making a scope: the click-writer process's way."""
        if self._client_of is not _socket_peer:  # trusted proxies: their headers decide
            return self(restore(item))
        code, at, method, client, headers, counted = item
        return self._click(code, at, method, *_click_headers(headers),
                           str(client[0]) if client else None, counted)

    def _click(self, code: str, at: float, method: str, user_agent: bytes | None,
               referrer: bytes | None, purpose: bytes | None, address: str | None,
               counted: bool) -> Click:
        host, cropped, agent_text, browser, os_family, device, reason, get = _parts_of(
            method, user_agent, referrer, purpose)
        country = None
        if self._country_of is not None and address is not None:
            try:
                country = self._country_of(address)  # the full address, before anonymising
            except Exception:  # a corrupt database must not cost the click
                log.exception("GeoIP lookup failed")
        # Positional, in Click's field order (a third cheaper than by keyword).
        return Click(new_click_id(), code, at, host, cropped, agent_text, browser, os_family,
                     device, reason is not None, reason, self._ip_of(address), country,
                     counted and get)

    def _ip_of(self, address: str | None) -> str | None:
        if address is None:
            return None
        found = self._ips.get(address)
        if found is None:
            if len(self._ips) >= CACHE_MAX:
                self._ips.clear()
            found = self._ips[address] = tracked_ip(address, self._ip_tracking) or ""
        return found or None


def _click_headers(headers: Iterable[tuple[bytes, bytes]]
                   ) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(User-Agent, Referer, Sec-Purpose or Purpose) of a request's headers, as sent."""
    user_agent = referrer = purpose = None
    for name, value in headers:
        if name == b"user-agent":
            user_agent = value
        elif name == b"referer":
            referrer = value
        elif name == b"sec-purpose" or name == b"purpose":
            purpose = value
    return user_agent, referrer, purpose


CACHE_MAX = 10_000  # distinct user agents, referrers, addresses remembered (then forgotten)
_AGENTS: dict[bytes | None, tuple[str | None, Agent]] = {}
_REFERRERS: dict[bytes | None, tuple[str | None, str | None]] = {}


_PARTS: dict[tuple[str, bytes | None, bytes | None, bytes | None], tuple[Any, ...]] = {}


def _parts_of(method: str, user_agent: bytes | None, referrer: bytes | None,
              purpose: bytes | None) -> tuple[Any, ...]:
    """What a click's request headers make of it, cached by the headers' bytes: (referrer
    host, referrer cropped, agent cropped, browser, OS, device, bot reason, is a GET). Clicks
    come from a few agents and referrers, so the writer classifies each combination once."""
    key = (method, user_agent, referrer, purpose)
    found = _PARTS.get(key)
    if found is None:
        agent_text, agent = _agent_of(user_agent)
        reason = bot_reason(method, purpose.decode("latin-1") if purpose else None, agent)
        host, cropped = _referrer_of(referrer)
        if len(_PARTS) >= CACHE_MAX:
            _PARTS.clear()
        found = _PARTS[key] = (host, cropped, agent_text, agent.browser, agent.os, agent.device,
                               reason, method == "GET")
    return found


def _agent_of(user_agent: bytes | None) -> tuple[str | None, Agent]:
    """(the agent cropped to its column, classified), cached by the header's bytes."""
    found = _AGENTS.get(user_agent)
    if found is None:
        text = user_agent.decode("latin-1") if user_agent is not None else None
        if len(_AGENTS) >= CACHE_MAX:
            _AGENTS.clear()
        found = _AGENTS[user_agent] = (crop_agent(text), classify_agent(text))
    return found


def _referrer_of(referrer: bytes | None) -> tuple[str | None, str | None]:
    found = _REFERRERS.get(referrer)
    if found is None:
        if len(_REFERRERS) >= CACHE_MAX:
            _REFERRERS.clear()
        found = _REFERRERS[referrer] = split_referrer(
            referrer.decode("latin-1") if referrer is not None else None)
    return found


def _socket_peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


# Headers captured before, each kept once: (name, value) -> the same pair. See capture_request.
_SEEN_HEADERS: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}


def capture_request(code: str, at: float, scope: Scope, counted: bool) -> Captured:
    """What a click-writer process needs of a request, without the request: cheap (no parsing,
    no classifying), so the serving process does no more than this, and keeps no reference to
    the request (its scope) once it is answered.

    Each kept header is swapped for an equal pair seen before. Clicks come from a few agents
    and referrers: the request's own header objects are freed as soon as it is answered rather
    than held until the batch leaves, and a frame of 500 clicks carries each distinct header
    once (`marshal` writes an object met again as a back-reference), about a quarter of the
    bytes to build, send and read (docs/performance.md, "Click recording cost")."""
    wanted = CAPTURED_HEADERS
    seen = _SEEN_HEADERS
    if len(seen) >= CACHE_MAX:  # forwarded-for values from many clients: forget, start again
        seen.clear()
    kept = []
    for name, value in scope.get("headers", ()):
        if name in wanted:
            header = (name, value)
            kept.append(seen.setdefault(header, header))
    client = scope.get("client")
    return (code, at, scope.get("method", "GET"), client and (client[0], client[1]), kept,
            counted)


def capture(raw: Raw) -> Captured:
    return capture_request(*raw)


def restore(captured: Captured) -> Raw:
    """A capture back as (code, time, scope, counted): what `ClickEnricher` reads."""
    code, at, method, client, headers, counted = captured
    return code, at, {"method": method, "client": client, "headers": headers}, counted


def captured_at(item: Click | Captured) -> float:
    return item.at if isinstance(item, Click) else item[1]


class ClickRecorder:
    """A bounded in-process queue of clicks and the task that writes them in batches."""

    def __init__(self, sink: ClickSink | CaptureSink, enrich: Callable[[Any], Any] | None = None, *,
                 queue_size: int = 50_000, batch_size: int = 500, batch_age: float = 1.0,
                 capture: Callable[[str, float, Scope, bool], Any] | None = None) -> None:
        """`enrich` turns what the redirect hands over into what `sink` takes (a `Click`),
        in the writer task. With `capture` instead (`capture_request`, for a sink that hands
        clicks to a writer process), `record()` reduces the request to that at once and the
        writer task passes it on as it is."""
        self._sink = sink
        self._enrich = None if capture is not None else (enrich or ClickEnricher())
        if capture is not None:
            self._capture = capture
            self.record = self._record_captured  # type: ignore[method-assign]
        self._max = queue_size
        self._batch_size = batch_size
        self._batch_age = batch_age
        self._queue: deque[Any] = deque()  # Raw, or Captured (see __init__ and accept)
        self._retry: deque[list[Any]] = deque()  # batches whose write failed, oldest first
        self._held = 0  # clicks in `_retry`
        self._refusals = 0  # failed writes of the oldest batch (not "storage unavailable")
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set after each batch written
        self._urgent = False  # write even a partial batch now (someone waits for room)
        self._writing = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # clicks handed to the sink
        self.dropped = 0  # clicks refused by a full queue

    # -- the hot path ----------------------------------------------------------------------

    def record(self, code: str, scope: Scope, counted: bool) -> None:
        """Queue one click. Never waits, never raises; a full queue counts a drop."""
        queue = self._queue
        if len(queue) + self._held >= self._max:
            self.dropped += 1
            return
        queue.append((code, time(), scope, counted))
        if len(queue) == self._batch_size:
            self._wake.set()

    def _record_captured(self, code: str, scope: Scope, counted: bool) -> None:
        """`record()` when the request is reduced at once (see `__init__`)."""
        queue = self._queue
        if len(queue) + self._held >= self._max:
            self.dropped += 1
            return
        at = time()
        try:
            item = self._capture(code, at, scope, counted)
        except Exception:  # never fail a redirect; keep the click, bare
            log.exception("could not capture a click; keeping it bare")
            item = (code, at, "GET", None, (), counted)
        queue.append(item)
        if len(queue) == self._batch_size:
            self._wake.set()

    def accept(self, raws: Sequence[Any]) -> int:
        """Queue clicks captured elsewhere (a click-writer process takes its HTTP workers'
        batches here); what a full queue cannot hold is counted in `dropped`. Returns how many
        were queued."""
        room = max(0, self._max - len(self._queue) - self._held)
        taken = raws if len(raws) <= room else raws[:room]
        self.dropped += len(raws) - len(taken)
        self._queue.extend(taken)
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return len(taken)

    @property
    def capacity(self) -> int:
        return self._max

    async def room(self, below: int) -> None:
        """Wait until fewer than `below` clicks are pending (the writer has caught up)."""
        while self.pending >= below:
            self._progress.clear()
            self._urgent = True
            self._wake.set()
            await self._progress.wait()

    # -- state, for metrics ----------------------------------------------------------------

    @property
    def sink(self) -> ClickSink | CaptureSink:
        return self._sink

    @property
    def pending(self) -> int:
        """Clicks captured and not yet written (queued, or held for a retry)."""
        return len(self._queue) + self._held

    def lag(self) -> float:
        """Seconds since the oldest click not yet written was captured (0 when none is)."""
        oldest = None
        if self._retry and self._retry[0]:
            oldest = captured_at(self._retry[0][0])
        elif self._queue:
            oldest = self._queue[0][1]
        return 0.0 if oldest is None else max(0.0, time() - oldest)

    # -- writing ---------------------------------------------------------------------------

    async def _fill(self, batch: list[Any]) -> None:
        """Move up to a batch of clicks from the queue into `batch` (already held for retry),
        classifying each; yields to the event loop now and then so redirects never wait for a
        whole batch. A cancellation midway leaves every click in the queue or in `batch`."""
        queue, enrich = self._queue, self._enrich
        if enrich is None:  # captured already: passed on as they are
            taken = min(self._batch_size, len(queue))
            batch.extend([queue.popleft() for _ in range(taken)])
            self._held += taken
            return
        for i in range(min(self._batch_size, len(queue))):
            if i and not i % YIELD_EVERY:
                await asyncio.sleep(0)
            if not queue:
                break
            raw = queue[0]
            try:
                click = enrich(raw)
            except Exception:  # a bug in classifying must not lose the click
                log.exception("could not classify a click; storing it bare")
                click = _bare(raw)
            queue.popleft()
            batch.append(click)
            self._held += 1

    async def _write_one(self) -> None:
        """Write the oldest failed batch, else the next batch from the queue."""
        if self._retry:
            batch = self._retry[0]
        else:
            batch = []
            self._retry.append(batch)  # held until written: a failure or cancel keeps it
            await self._fill(batch)
        try:
            await self._sink.write(batch)
        except StorageUnavailable:
            raise  # storage is away: keep the batch as long as it takes
        except Exception:
            # Storage answered and refused this batch: retried, but a batch it can never take
            # must not block every click behind it. After a few tries it is dropped, counted.
            self._refusals += 1
            if self._refusals >= MAX_REFUSALS:
                self._retry.popleft()
                self._held -= len(batch)
                self.dropped += len(batch)
                self._refusals = 0
                log.error("dropped a batch of %d clicks that storage refused %d times",
                          len(batch), MAX_REFUSALS)
            raise
        self._refusals = 0
        self._retry.popleft()
        self._held -= len(batch)
        self.written += len(batch)
        self._progress.set()

    async def flush(self) -> None:
        """Write everything captured so far (several batches); raises if a write fails.

        One writer at a time: a flush called while the background task writes waits for it,
        so a batch is never written (or taken off the retry queue) twice.
        """
        async with self._writing:
            while self._retry or self._queue:
                await self._write_one()
                self._wake.clear()

    def _due(self) -> bool:
        """Whether the queue holds a batch to write now: a full one, or clicks that have waited
        the batch age (or a caller waits for room). A younger, partial batch is left to grow:
        on SQLite a click costs less in a large batch than in a small one."""
        queue = self._queue
        return bool(queue) and (self._urgent or len(queue) >= self._batch_size
                                or time() - queue[0][1] >= self._batch_age)

    async def _write_due(self) -> None:
        async with self._writing:
            while self._retry or self._due():
                await self._write_one()
            self._urgent = False
            self._wake.clear()

    def _next_due(self) -> float:
        """Seconds until the oldest queued click has waited the batch age."""
        if not self._queue:
            return self._batch_age
        oldest: float = self._queue[0][1]
        return min(self._batch_age, max(0.01, oldest + self._batch_age - time()))

    async def _run(self) -> None:
        # A full batch wakes the writer early, except while storage is failing (back off).
        await keep_writing(self._write_due, what="clicks", pending=lambda: self.pending,
                           stopping=self._stopping, wake=self._wake,
                           next_delay=self._next_due, log=log)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="clicks")

    async def close(self, *, tries: int = 3) -> None:
        """Stop the loop without cutting a write short, then write what is left."""
        if self._task is not None:
            self._stopping.set()
            self._wake.set()
            await self._task  # a write in progress finishes (its transaction too)
            self._task = None
        await write_all(self.flush, what="clicks", pending=lambda: self.pending, log=log,
                        tries=tries)


def _bare(raw: Raw | Captured) -> Click:
    code, at, counted = raw[0], raw[1], raw[-1]
    return Click(id=new_click_id(), code=code, at=at, referrer_host=None, referrer=None,
                 user_agent=None, browser=None, os=None, device=None, is_bot=False,
                 bot_reason=None, ip=None, country=None, counted=counted)
