"""Bulk creation, QR codes and password-protected links (issue 5).

`router`: `POST /api/v1/links/bulk` and `GET /api/v1/links/{code}/qr`. `pages`: the password
form at `GET|HEAD|POST /{code}` (and `/r/{code}`), which the redirect hands protected links to.
"""

from __future__ import annotations

import asyncio
import io
import json
from html import escape
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import segno
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.convertors import Convertor, register_url_convertor

from snip.domain.codes import MAX_CUSTOM_CODE_LENGTH, RESERVED_WORDS, looks_like_code
from snip.domain.errors import LinkNotFound, SnipError
from snip.domain.links import utcnow
from snip.entrypoints import pages as html
from snip.entrypoints import problems
from snip.entrypoints.api import (
    Code,
    LinkIn,
    LinkOut,
    Problem,
    Service,
    render,
)
from snip.entrypoints.auth import Creator, Reader
from snip.entrypoints.limits import charge_creation, password_attempt
from snip.service_layer.links import NewLink

router = APIRouter(prefix="/api/v1", tags=["links"])
pages = APIRouter(include_in_schema=False)


class _CodeConvertor(Convertor[str]):
    """Path segments that can be codes, never one of snip's own words: `POST /healthz` stays
    a 405 from its route rather than becoming a password attempt here."""

    regex = (r"(?!(?i:" + "|".join(sorted(RESERVED_WORDS)) + r")$)"
             rf"[A-Za-z0-9_-]{{1,{MAX_CUSTOM_CODE_LENGTH}}}")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("snipcode", _CodeConvertor())

MAX_BULK_ITEMS = 1000
MAX_BULK_BYTES = 16 * 1024 * 1024
MAX_FORM_BYTES = 4096
QR_MIN_SIZE, QR_MAX_SIZE, QR_BORDER = 64, 2048, 4
QR_CACHE = "private, max-age=86400"  # a code's short URL never changes


# -- bulk --------------------------------------------------------------------------------------


class BulkItem(BaseModel):
    index: int
    status: int = Field(description="201 created, 200 reused, or the error's status")
    link: LinkOut | None = None
    problem: Problem | None = None


class BulkOut(BaseModel):
    created: int
    failed: int
    results: list[BulkItem]


def _item_problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Problem:
    return Problem(type=f"/problems/{kind}", title=title, status=status, detail=detail, **extra)


@router.post("/links/bulk", response_model=BulkOut, summary="Create up to 1,000 links at once",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object", "required": ["links"], "properties": {"links": {
                     "type": "array", "maxItems": MAX_BULK_ITEMS,
                     "items": {"$ref": "#/components/schemas/LinkIn"}}}}}}}},
             responses={413: {"model": Problem, "description": "More than 1,000 links (or 16 MiB)"},
                        422: {"model": Problem, "description": "Not a list of links"}})
async def create_bulk(request: Request, svc: Service, actor: Creator) -> Any:
    """One result per item, in order; items fail alone (partial success), as a single create
    would fail. Each item is created as `POST /api/v1/links` would create it."""
    path = request.url.path
    body = await _read_capped(request, MAX_BULK_BYTES)
    if body is None:
        return problems.problem(413, "http-error", "Request too large",
                                f"the body is larger than {MAX_BULK_BYTES} bytes", path)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    items = data.get("links") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return problems.problem(422, "validation-error", "Invalid request",
                                "body: expected a JSON object with a 'links' list", path,
                                errors=[{"loc": ["body", "links"], "msg": "a list is required",
                                         "type": "list_type"}])
    if len(items) > MAX_BULK_ITEMS:
        return problems.problem(413, "http-error", "Request too large",
                                f"{len(items)} links in one request; the limit is "
                                f"{MAX_BULK_ITEMS}", path)
    await charge_creation(request, actor, cost=len(items))  # N links cost N (429 if over)
    results: list[BulkItem] = []
    created = 0
    for index, raw in enumerate(items):
        try:
            item = LinkIn.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "item"
            results.append(BulkItem(index=index, status=422, problem=_item_problem(
                422, "validation-error", "Invalid request", f"{where}: {first['msg']}")))
            continue
        try:
            result = await svc.create(NewLink(**item.model_dump()), actor)
        except SnipError as exc:
            status = problems.STATUS.get(type(exc), 400)
            extra = {"reason": getattr(exc, "reason", None)} if exc.kind == "invalid-url" else {}
            results.append(BulkItem(index=index, status=status, problem=_item_problem(
                status, exc.kind, exc.title, exc.detail, **extra)))
            continue
        created += result.created
        results.append(BulkItem(index=index, status=201 if result.created else 200,
                                link=render(svc, result.link)))
    return BulkOut(created=created, failed=sum(r.problem is not None for r in results),
                   results=results)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None if it is larger than `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- QR codes ----------------------------------------------------------------------------------


@router.get("/links/{code}/qr", summary="A QR code of the short URL",
            response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}, "image/png": {}},
                             "description": "The QR code"},
                       404: {"model": Problem}})
async def qr_code(
    code: Code, svc: Service, actor: Reader,
    format: Annotated[Literal["svg", "png"], Query(description="Image format")] = "svg",
    size: Annotated[int, Query(ge=QR_MIN_SIZE, le=QR_MAX_SIZE,
                               description="Largest edge in pixels (the image is the largest "
                                           "whole multiple of the module count that fits)")] = 256,
) -> Response:
    link = await svc.get(code, actor)  # another user's link: 404, as reading it would be
    image, media_type = await asyncio.to_thread(_qr, svc.short_url(link.code), format, size)
    return Response(image, media_type=media_type,
                    headers={"Cache-Control": QR_CACHE, "X-Content-Type-Options": "nosniff",
                             "Content-Disposition": f'inline; filename="{link.code}.{format}"'})


def _qr(data: str, kind: str, size: int) -> tuple[bytes, str]:
    qr = segno.make(data, error="m", micro=False)
    modules = qr.symbol_size(border=QR_BORDER)[0]
    scale = max(1, size // modules)
    out = io.BytesIO()
    if kind == "png":
        qr.save(out, kind="png", scale=scale, border=QR_BORDER)
        return out.getvalue(), "image/png"
    qr.save(out, kind="svg", scale=scale, border=QR_BORDER, xmldecl=True, title=data)
    return out.getvalue(), "image/svg+xml"


# -- the password form -------------------------------------------------------------------------

_FORM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


def password_form(code: str, error: str | None = None) -> str:
    """A form that posts back to the address it was shown at (no cookies, so no CSRF token)."""
    alert = f"<p class=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    return html.page(
        "Password required",
        "<h1>This link is protected</h1><p>Enter the password to continue to the destination "
        f"of <code>{escape(code)}</code>.</p>{alert}"
        "<form method=\"post\"><label for=\"password\">Password</label>"
        "<input type=\"password\" id=\"password\" name=\"password\" required autofocus "
        "autocomplete=\"current-password\" maxlength=\"128\" style=\"width:100%;padding:.5rem;"
        "font-size:1rem;box-sizing:border-box\"><button type=\"submit\">Continue</button>"
        "</form>",
    )


def _page(body: str | bytes, status: int, method: str = "GET") -> Response:
    content = body.encode() if isinstance(body, str) else body
    headers = dict(_FORM_HEADERS)
    if method == "HEAD":  # the form's headers, without the form
        headers["Content-Length"] = str(len(content))
        content = b""
    return Response(content, status, headers=headers, media_type="text/html; charset=utf-8")


async def _show(request: Request, svc: Service, code: str) -> Response:
    if not looks_like_code(code):
        return _page(html.NOT_FOUND, 404, request.method)
    target = await svc.resolve(code)
    if target is None or not target.protected:
        # Only protected links reach this route from the redirect; anything else is not ours.
        return _page(html.NOT_FOUND, 404, request.method)
    if target.verdict(utcnow().timestamp()).gone:
        return _page(html.GONE, 410, request.method)
    if target.max_visits is not None and await svc.visits(code) >= target.max_visits:
        return _page(html.GONE, 410, request.method)  # no form for a link that is used up
    if target.blocked:
        return _page(html.BLOCKED, 403, request.method)
    return _page(password_form(code), 200, request.method)


async def _unlock(request: Request, svc: Service, code: str) -> Response:
    if not looks_like_code(code):
        return _page(html.NOT_FOUND, 404)
    target = await svc.resolve(code)
    if target is None or not target.protected:
        return _page(html.NOT_FOUND, 404)
    snip = getattr(request.app.state, "snip", None)
    await password_attempt(request, code)  # 429 past the per-address or per-link limit
    body = await _read_capped(request, MAX_FORM_BYTES) or b""
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    password = (form.get("password") or [""])[0]
    try:
        link = await svc.get(code)  # storage, not the cache: the current hash and state
    except LinkNotFound:
        return _page(html.NOT_FOUND, 404)
    if link.verdict(utcnow()).gone:
        return _page(html.GONE, 410)
    if link.blocked:
        return _page(html.BLOCKED, 403)
    if link.password_hash is None:  # protection was removed meanwhile: just go
        return RedirectResponse(link.url, 303, headers={"Cache-Control": "no-store"})
    if not await svc.passwords.verify(link.password_hash, password):
        return _page(password_form(code, "Wrong password. Try again."), 401)
    counted = link.max_visits is None  # else the visit is taken here, atomically
    if not counted and not await svc.take_visit(code):
        return _page(html.GONE, 410)
    clicks = getattr(snip, "clicks", None)
    if clicks is not None:  # the click, as the redirect records a GET's (the visit it unlocks)
        clicks.record(code, {**request.scope, "method": "GET"}, counted)
    # 303: the browser follows with a GET, and never re-posts the password to the destination.
    return RedirectResponse(link.url, 303, headers={"Cache-Control": "no-store",
                                                    "Referrer-Policy": "no-referrer"})


@pages.api_route("/{code:snipcode}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def protected_form(request: Request, code: str, svc: Service) -> Response:
    return await _show(request, svc, code)


@pages.api_route("/r/{code:snipcode}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def protected_form_legacy(request: Request, code: str, svc: Service) -> Response:
    return await _show(request, svc, code)


@pages.post("/{code:snipcode}", response_class=HTMLResponse)
async def protected_unlock(request: Request, code: str, svc: Service) -> Response:
    return await _unlock(request, svc, code)


@pages.post("/r/{code:snipcode}", response_class=HTMLResponse)
async def protected_unlock_legacy(request: Request, code: str, svc: Service) -> Response:
    return await _unlock(request, svc, code)
