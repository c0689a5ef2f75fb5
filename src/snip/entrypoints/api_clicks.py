"""Click statistics and raw clicks (issue 4): per-link stats, raw click pages, CSV export, summary.

Parse, call the stats service, render. A link the caller may not see answers 404, exactly as
an unknown code does.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from snip.domain.accounts import STATS_READ, Actor
from snip.entrypoints.auth import require
from snip.service_layer.stats import (
    CLICK_FIELDS,
    EARLIEST,
    LATEST,
    MAX_PAGE,
    Click,
    Cursor,
    Interval,
    InvalidQuery,
    StatsService,
    Window,
    as_json,
    parse_time,
)

router = APIRouter(prefix="/api/v1", tags=["stats"])

CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Code = Annotated[str, Path(pattern=CODE_PATTERN, description="The short code")]
Reader = Annotated[Actor, Depends(require(STATS_READ))]
From = Annotated[str | None, Query(alias="from", max_length=64,
                                   description="ISO 8601 start (inclusive), UTC if no zone; "
                                               "default: `to` minus 30 days")]
To = Annotated[str | None, Query(alias="to", max_length=64,
                                 description="ISO 8601 end (exclusive); default: now")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such link (or not yours)"}}


class TallyOut(BaseModel):
    value: str
    total: int
    humans: int
    bots: int


class BucketOut(BaseModel):
    start: datetime = Field(description="Start of the hour or day (UTC)")
    total: int
    humans: int
    bots: int


class TopOut(BaseModel):
    referrers: list[TallyOut] = Field(description="By referrer host")
    browsers: list[TallyOut]
    os: list[TallyOut]
    devices: list[TallyOut]
    countries: list[TallyOut]


class GlobalTopOut(TopOut):
    links: list[TallyOut] = Field(description="Most clicked codes")


class StatsOut(BaseModel):
    """Clicks in [from, to), widened to whole buckets: raw clicks plus daily rollups."""

    code: str | None
    from_: datetime = Field(alias="from")
    to: datetime
    interval: Interval
    total: int
    humans: int
    bots: int
    series: list[BucketOut] = Field(description="Every bucket of the range, empty ones too")
    top: TopOut


class GlobalStatsOut(StatsOut):
    top: GlobalTopOut


class ClickOut(BaseModel):
    id: str
    code: str
    ts: datetime
    referrer_host: str | None
    referrer: str | None
    user_agent: str | None
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool
    bot_reason: str | None
    ip: str | None
    country: str | None


class ClickPageOut(BaseModel):
    items: list[ClickOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


def stats_service(request: Request) -> StatsService:
    stats: StatsService | None = request.app.state.snip.stats
    if stats is None:  # pragma: no cover - bootstrap always builds it
        raise RuntimeError("the stats service is not wired")
    return stats


Service = Annotated[StatsService, Depends(stats_service)]


def invalid(exc: InvalidQuery) -> RequestValidationError:
    """A 422 problem, the same shape as FastAPI's own query validation errors."""
    return RequestValidationError([{"loc": ["query", exc.field], "msg": exc.message,
                                    "type": "value_error"}])


def _window(svc: StatsService, start: str | None, end: str | None,
            interval: Interval = "day") -> Window:
    try:
        return svc.window(parse_time("from", start), parse_time("to", end), interval)
    except InvalidQuery as exc:
        raise invalid(exc) from None


def _range(start: str | None, end: str | None) -> Window | None:
    """The exact [from, to) of a clicks query (no default: every click)."""
    try:
        first, last = parse_time("from", start), parse_time("to", end)
    except InvalidQuery as exc:
        raise invalid(exc) from None
    if first is None and last is None:
        return None
    if first is not None and last is not None and last <= first:
        raise invalid(InvalidQuery("to", "must be later than 'from'"))
    return Window(first or EARLIEST, last or LATEST, "day")


@router.get("/links/{code}/stats", response_model=StatsOut, response_model_by_alias=True,
            responses=NOT_FOUND, summary="Click statistics of one link")
async def link_stats(code: Code, actor: Reader, svc: Service, start: From = None,
                     end: To = None, interval: Interval = "day") -> dict[str, Any]:
    """Totals, a time series by hour or day (UTC) and the top 10 referrer hosts, browsers,
    operating systems, devices and countries. Days whose raw clicks were purged count from
    their daily rollups: in an hourly series they appear in the day's first hour."""
    stats = await svc.link_stats(actor, code, _window(svc, start, end, interval))
    return as_json(stats, code)


@router.get("/stats", response_model=GlobalStatsOut, response_model_by_alias=True,
            responses={403: {"description": "Not an admin"}},
            summary="Click statistics across all links (admins)")
async def global_stats(actor: Reader, svc: Service, start: From = None, end: To = None,
                       interval: Interval = "day") -> dict[str, Any]:
    stats = await svc.global_stats(actor, _window(svc, start, end, interval))
    return as_json(stats, None)


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{cursor.ts.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        ts, _, click_id = raw.partition("|")
        at = datetime.fromisoformat(ts)
        if at.tzinfo is None or not click_id:
            raise ValueError(raw)
        return Cursor(at, click_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(InvalidQuery("cursor", "not a cursor this API handed out")) from None


# Cells a spreadsheet would run as a formula (CSV injection): user agents and referrers are
# chosen by whoever clicks, so such cells are exported with a leading apostrophe.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _csv_rows(pages: AsyncIterator[list[Click]]) -> AsyncIterator[str]:
    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CLICK_FIELDS)
        async for page in pages:
            for click in page:
                writer.writerow([_cell(getattr(click, f)) for f in CLICK_FIELDS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()

    return rows()


@router.get("/links/{code}/clicks", response_model=ClickPageOut,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}},
                                          "description": "A page of clicks, or every click "
                                                         "as CSV with format=csv"}},
            summary="Raw clicks of one link, newest first (JSON pages or a CSV export)")
async def link_clicks(
    code: Code, actor: Reader, svc: Service, start: From = None, end: To = None,
    cursor: Annotated[str | None, Query(max_length=200,
                                        description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    format: Annotated[Literal["json", "csv"], Query(
        description="csv: every click in the range, streamed; `cursor`/`limit` do not apply")
    ] = "json",
) -> Any:
    win = _range(start, end)
    if format == "csv":
        pages = await svc.export(actor, code, win)
        return StreamingResponse(
            _csv_rows(pages), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{code}-clicks.csv"',
                     "Cache-Control": "no-store"})
    after = decode_cursor(cursor) if cursor else None
    page = await svc.clicks(actor, code, win, after, limit)
    return ClickPageOut(
        items=[ClickOut(**{f: getattr(c, f) for f in CLICK_FIELDS}) for c in page.items],
        next_cursor=encode_cursor(page.next) if page.next else None)
