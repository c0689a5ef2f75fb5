"""Bulk import of links: validate rows in a process pool, insert in big idempotent batches.

The pipeline: a reader streams raw rows; they go in chunks to worker processes that apply the
same rules as a single create (`normalise_url`, custom codes, title, tags, statuses) and draw
random codes; the parent inserts each validated chunk in one transaction through
`LinkImportStore.add_many`. Chunks are handed out in order and only a few are in flight, so
memory stays flat whatever the file size. A re-run inserts nothing twice: rows with a code are
unique by code, rows without one by an import key made of owner and URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple

from snip.domain import codes, links, urls
from snip.domain.checks import Blocklist, host_key, host_of
from snip.domain.errors import BlockedURL, SnipError
from snip.domain.links import ANONYMOUS_OWNER, as_utc
from snip.service_layer import passwords
from snip.service_layer.ports import ImportRow, LinkImportStore

CHUNK = 5000  # rows per validation job
IMPORT_KEY_HEX = 32  # 128 bits of the URL's digest: half the index of the full 256
INSERT_BATCH = 50_000  # rows per insert transaction (bench: 54 → 37 µs of CPU per row)
POOL_THRESHOLD = 20_000  # rows: below this the pool's start-up costs more than it saves
TRUE = frozenset({"1", "true", "yes", "y", "t"})
FALSE = frozenset({"", "0", "false", "no", "n", "f"})


class RawRow(NamedTuple):
    """One record as a reader found it: strings (tags a list), nothing checked yet.

    Sent to worker processes as a plain tuple (pickling named tuples costs ten times more).
    """

    row: int  # 1-based record number, the header not counted (JSON: position in the list)
    url: str | None
    code: str | None = None
    title: str | None = None
    tags: list[str] | None = None
    created_at: str | None = None
    visits: str | None = None
    owner: str | None = None
    expires_at: str | None = None
    max_visits: str | None = None
    disabled: str | None = None
    redirect_status: str | None = None
    password: str | None = None
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything a worker needs to validate rows as `LinkService.create` would."""

    base_url: str
    max_url_bytes: int = urls.MAX_URL_BYTES
    code_length: int = 7
    custom_code_max_length: int = codes.MAX_CUSTOM_CODE_LENGTH
    default_redirect_status: int = 302
    owner: str | None = None  # --owner: overrides the file's owner column
    blocklist: Blocklist | None = None  # the domain blocklist, as LinkService's checker has it


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    skipped: int = 0
    invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # the first few, for tests


Invalid = tuple[int, str]


def validate_chunk(rows: list[tuple[Any, ...]], rules: Rules, now: datetime
                   ) -> tuple[list[tuple[Any, ...]], list[Invalid]]:
    """Validate and prepare one chunk of `RawRow` tuples (in a worker process; no I/O).

    Valid rows come back as plain `ImportRow` tuples, again for cheap pickling.
    """
    origins = (urls.origin_of(rules.base_url),)
    valid: list[tuple[Any, ...]] = []
    invalid: list[Invalid] = []
    make = RawRow._make
    hosts: dict[str, tuple[str, str | None]] = {}
    for values in rows:
        raw = make(values)
        try:
            valid.append(_validate(raw, rules, origins, now, hosts))
        except SnipError as exc:
            invalid.append((raw.row, exc.detail))
        except (ValueError, TypeError, OverflowError) as exc:
            invalid.append((raw.row, str(exc)))
    return valid, invalid


def _validate(raw: RawRow, rules: Rules, origins: tuple[urls.Origin, ...], now: datetime,
              hosts: dict[str, tuple[str, str | None]]) -> tuple[Any, ...]:
    """One row, as `LinkService.create` would check it: an `ImportRow`'s values, as a tuple."""
    if not raw.url:
        raise ValueError("no url")
    url = urls.normalise_url(raw.url, self_origins=origins, max_bytes=rules.max_url_bytes)
    digest = links.url_digest(url)
    # A normalised URL is scheme://authority/...: the host key is worked out once per authority.
    authority = url.split("/", 3)[2]
    known = hosts.get(authority)
    if known is None:
        if len(hosts) > 100_000:
            hosts.clear()
        name = host_of(url)
        known = hosts[authority] = (
            host_key(name), rules.blocklist.match(name) if rules.blocklist else None)
    host, blocked_by = known
    if blocked_by is not None:
        raise BlockedURL(f"this destination is not allowed: the domain {blocked_by} is on "
                         "this service's blocklist")
    owner = rules.owner or raw.owner or ANONYMOUS_OWNER
    if len(owner) > 64:
        raise ValueError("owner is longer than 64 characters")
    if raw.code is None:
        generated = True
        code = codes.generate_code(rules.code_length)
        import_key: str | None = f"{owner}:{digest[:IMPORT_KEY_HEX]}"
    else:
        generated = False
        code = codes.validate_custom_code(raw.code.strip(),
                                          max_length=rules.custom_code_max_length)
        import_key = None
    title = links.validate_title(raw.title) if raw.title else None
    tags = links.validate_tags(raw.tags) if raw.tags else ()
    extra = raw.expires_at or raw.max_visits or raw.disabled or raw.redirect_status \
        or raw.password or raw.password_hash or raw.visits
    created = _when(raw.created_at) if raw.created_at else now
    if not extra:  # the common case: url, maybe code, title, tags, date
        return (code, url, digest, host, title, tags, owner, created, None, None, 0, False,
                rules.default_redirect_status, None, import_key, generated)
    status = links.validate_redirect_status(int(raw.redirect_status)) if raw.redirect_status \
        else rules.default_redirect_status
    max_visits = links.validate_max_visits(int(raw.max_visits)) if raw.max_visits else None
    visits = int(raw.visits) if raw.visits else 0
    if visits < 0:
        raise ValueError("visits must not be negative")
    disabled = (raw.disabled or "").strip().lower()
    if disabled not in TRUE | FALSE:
        raise ValueError(f"disabled must be true or false, not {raw.disabled!r}")
    if raw.password_hash:
        if not passwords.looks_like_hash(raw.password_hash):
            raise ValueError("password_hash is not an argon2 hash")
        password_hash: str | None = raw.password_hash
    elif raw.password:
        password_hash = passwords.hash_password_sync(raw.password)
    else:
        password_hash = None
    # An expiry in the past is imported as is: the link answers 410, as it did before.
    expires_at = _when(raw.expires_at) if raw.expires_at else None
    return (code, url, digest, host, title, tags, owner, created, expires_at, max_visits,
            visits, disabled in TRUE, status, password_hash, import_key, generated)


_worker_rules: Rules | None = None


def _init_worker(rules: Rules) -> None:
    """Pool initializer: the rules (and blocklist) reach each worker once, not with every chunk."""
    global _worker_rules
    _worker_rules = rules


def _validate_in_worker(rows: list[tuple[Any, ...]], now: datetime
                        ) -> tuple[list[tuple[Any, ...]], list[Invalid]]:
    assert _worker_rules is not None, "the pool was made without _init_worker"
    return validate_chunk(rows, _worker_rules, now)


def _when(text: str) -> datetime:
    text = text.strip()
    if text.isdigit():  # a Unix timestamp
        return datetime.fromtimestamp(int(text), UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))  # YOURLS: "2024-01-02 03:04:05"
    return as_utc(value)


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


class _Inline(Executor):
    """Validation in this process: for small files and for `workers=1`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting code, as a pool would
            future.set_exception(exc)
        return future


class Importer:
    """Runs one import: rows in, an `ImportReport` out."""

    def __init__(self, store: LinkImportStore, rules: Rules, *, workers: int | None = None,
                 chunk: int = CHUNK, batch: int = INSERT_BATCH) -> None:
        self._store = store
        self._rules = rules
        self._workers = workers if workers is not None else (os.cpu_count() or 1)
        self._chunk = chunk
        self._batch = batch

    async def run(self, rows: Iterable[RawRow], *, size_hint: int | None = None,
                  on_progress: Callable[[int], None] | None = None,
                  on_invalid: Callable[[int, str], None] | None = None) -> ImportReport:
        """`size_hint`: roughly how many rows (None: unknown, use the pool)."""
        report = ImportReport()
        now = datetime.now(UTC)
        use_pool = self._workers > 1 and (size_hint is None or size_hint >= POOL_THRESHOLD)
        executor: Executor = (
            # spawn, not fork: the parent runs threads (the database driver's) and an event loop.
            ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_init_worker, initargs=(self._rules,))
            if use_pool else _Inline()
        )
        in_flight = self._workers * 2 if use_pool else 1
        loop = asyncio.get_running_loop()
        pending: deque[asyncio.Future[tuple[list[tuple[Any, ...]], list[Invalid]]]] = deque()
        batch = _Batch()
        # While the database writes one batch (in the driver's thread), this loop goes on
        # reading and handing out chunks, so the workers never wait for the insert.
        inserting: asyncio.Task[None] | None = None

        async def flush() -> None:
            nonlocal inserting
            if inserting is not None:
                await inserting
            todo, seen = batch.take()
            inserting = asyncio.create_task(
                self._insert(todo, seen, report, on_progress, on_invalid))

        try:
            for chunk in _chunks(rows, self._chunk):
                report.read += len(chunk)
                values = [tuple(r) for r in chunk]
                job = (executor.submit(_validate_in_worker, values, now) if use_pool
                       else executor.submit(validate_chunk, values, self._rules, now))
                pending.append(asyncio.wrap_future(job, loop=loop))
                if len(pending) >= in_flight:
                    batch.add(await pending.popleft(), report, on_invalid)
                    if len(batch.rows) >= self._batch:
                        await flush()
            while pending:
                batch.add(await pending.popleft(), report, on_invalid)
            await flush()
            assert inserting is not None
            await inserting
        finally:
            for future in pending:
                future.cancel()
            if inserting is not None and not inserting.done():
                inserting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await inserting
            executor.shutdown(wait=True, cancel_futures=True)
        return report

    async def _insert(self, todo: list[ImportRow], seen: int, report: ImportReport,
                      on_progress: Callable[[int], None] | None,
                      on_invalid: Callable[[int, str], None] | None) -> None:
        """One transaction for the whole batch: big batches write each index page once."""
        for _ in range(8):  # random codes that clash are drawn again, a few times at most
            outcome = await self._store.add_many(todo)
            report.created += outcome.created
            report.skipped += outcome.skipped
            if not outcome.retry:
                break
            todo = [r._replace(code=codes.generate_code(self._rules.code_length))
                    for r in outcome.retry]
        else:
            for left in todo:
                report.invalid += 1
                if on_invalid is not None:
                    on_invalid(0, f"no free code found for {left.url[:80]}")
        if on_progress is not None:
            on_progress(seen)


class _Batch:
    """Validated rows waiting for their insert, and how many rows they stand for."""

    def __init__(self) -> None:
        self.rows: list[ImportRow] = []
        self.seen = 0

    def take(self) -> tuple[list[ImportRow], int]:
        taken = self.rows, self.seen
        self.rows, self.seen = [], 0
        return taken

    def add(self, result: tuple[list[tuple[Any, ...]], list[Invalid]], report: ImportReport,
            on_invalid: Callable[[int, str], None] | None) -> None:
        values, invalid = result
        self.rows.extend(ImportRow._make(v) for v in values)
        self.seen += len(values) + len(invalid)
        for row, reason in invalid:
            report.invalid += 1
            if len(report.errors) < 1000:
                report.errors.append((row, reason))
            if on_invalid is not None:
                on_invalid(row, reason)
