"""The HTTP API and browser pages behind the redirect: parse, call the link service, render."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from snip import __version__
from snip.adapters.metrics import SnipMetrics
from snip.domain.errors import InvalidLink, LinkNotFound, SnipError
from snip.domain.links import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    Link,
    LinkQuery,
    utcnow,
)
from snip.entrypoints import pages, problems
from snip.entrypoints.auth import Creator, Reader, Writer, actor_of, creator
from snip.entrypoints.limits import RATE_LIMITED, CreationLimit, charge_creation, unknown_code
from snip.service_layer.links import PATCHABLE, LinkService, NewLink

CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_URL_CHARS = 65536  # the domain enforces the real byte limit with a clear reason
MAX_VISITS = 2**62

RedirectStatus = Literal[301, 302, 307, 308]


class LinkIn(BaseModel):
    """A link to create."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_CHARS, description="Destination, http or https",
                     examples=["https://example.com/some/long/page?ref=42"])
    code: str | None = Field(None, max_length=64,
                             description="Custom code: letters, digits, '-' and '_'")
    title: str | None = Field(None, max_length=MAX_TITLE_LENGTH)
    tags: list[Annotated[str, Field(max_length=MAX_TAG_LENGTH)]] | None = Field(
        None, max_length=MAX_TAGS)
    expires_at: datetime | None = Field(None, description="After this time the link answers 410")
    max_visits: int | None = Field(None, ge=1, le=MAX_VISITS,
                                   description="After this many redirects the link answers 410")
    redirect_status: RedirectStatus | None = Field(None, description="Default 302")
    reuse: bool | None = Field(
        None, description="Hand back the existing link for the same URL instead of a new one")
    password: str | None = Field(None, min_length=4, max_length=128, description=(
        "Visitors must enter this password before the redirect; stored only as an argon2id hash"))


class LinkPatch(BaseModel):
    """Fields to change; absent fields stay as they are, null removes an optional field."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=MAX_URL_CHARS)
    title: str | None = Field(None, max_length=MAX_TITLE_LENGTH)
    tags: list[Annotated[str, Field(max_length=MAX_TAG_LENGTH)]] | None = Field(
        None, max_length=MAX_TAGS)
    expires_at: datetime | None = None
    max_visits: int | None = Field(None, ge=1, le=MAX_VISITS)
    redirect_status: RedirectStatus | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=4, max_length=128,
                                 description="A new password, or null to remove protection")


class LinkOut(BaseModel):
    code: str
    short_url: str
    preview_url: str
    url: str
    title: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    max_visits: int | None
    visits: int
    disabled: bool
    redirect_status: int
    password_protected: bool = False


class LinkPage(BaseModel):
    items: list[LinkOut]
    total: int
    page: int
    per_page: int
    pages: int


class ShortenIn(BaseModel):
    """The original design's request body."""

    url: str = Field(max_length=MAX_URL_CHARS)


class ShortenOut(BaseModel):
    code: str
    short_url: str
    url: str


class ProblemItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is sent (`application/problem+json`)."""

    type: str = Field(description="A URI reference naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="What is wrong, for a person")
    instance: str | None = None
    reason: str | None = Field(None, description="For invalid-url: the rule the URL broke")
    errors: list[ProblemItem] | None = Field(None, description="For validation-error: each problem")


def service(request: Request) -> LinkService:
    svc: LinkService = request.app.state.service
    return svc


Service = Annotated[LinkService, Depends(service)]
Code = Annotated[str, Path(pattern=CODE_PATTERN, description="The short code")]

ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The custom code is taken"},
    422: {"model": Problem, "description": "Invalid URL or field"},
    503: {"model": Problem, "description": "Storage unavailable; retry"},
}


def render(svc: LinkService, link: Link) -> LinkOut:
    return LinkOut(
        code=link.code, short_url=svc.short_url(link.code),
        preview_url=svc.short_url(link.code) + "+", url=link.url, title=link.title,
        tags=list(link.tags), created_at=link.created_at, updated_at=link.updated_at,
        expires_at=link.expires_at, max_visits=link.max_visits, visits=link.visits,
        disabled=link.disabled, redirect_status=link.redirect_status,
        password_protected=link.password_hash is not None,
    )


v1 = APIRouter(prefix="/api/v1", tags=["links"])


@v1.post("/links", status_code=201, response_model=LinkOut, responses=ERRORS | RATE_LIMITED,
         summary="Create a short link")
async def create_link(body: LinkIn, svc: Service, response: Response, actor: Creator,
                      _limit: CreationLimit) -> LinkOut:
    result = await svc.create(NewLink(**body.model_dump()), actor)
    if not result.created:
        response.status_code = 200  # `reuse` handed back an existing link
    response.headers["Location"] = f"/api/v1/links/{result.link.code}"
    return render(svc, result.link)


ORDER = Literal["created_at", "-created_at", "updated_at", "-updated_at", "code", "-code",
                "url", "-url", "title", "-title", "visits", "-visits"]


@v1.get("/links", response_model=LinkPage, summary="List, search and filter links")
async def list_links(
    svc: Service,
    actor: Reader,
    q: Annotated[str | None, Query(max_length=200, description="Search URL and title")] = None,
    tag: Annotated[list[str] | None, Query(max_length=MAX_TAGS,
                                           description="Only links with every tag")] = None,
    order: Annotated[ORDER, Query(description="Field, '-' for descending")] = "-created_at",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 50,
    owner: Annotated[str | None, Query(max_length=64,
                                       description="Admins: only this user's links")] = None,
) -> LinkPage:
    for text in [q or "", *(tag or [])]:
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise InvalidLink("search terms and tags must not contain control characters")
    query = LinkQuery(
        search=q or None, tags=tuple(t.strip().lower() for t in tag or () if t.strip()),
        order_by=order.lstrip("-"), descending=order.startswith("-"),
        limit=per_page, offset=(page - 1) * per_page, owner=owner,
    )
    result = await svc.list(query, actor)
    return LinkPage(items=[render(svc, link) for link in result.items], total=result.total,
                    page=page, per_page=per_page, pages=-(-result.total // per_page))


@v1.get("/links/{code}", response_model=LinkOut, responses={404: {"model": Problem}},
        summary="Read one link")
async def get_link(code: Code, svc: Service, actor: Reader) -> LinkOut:
    return render(svc, await svc.get(code, actor))


@v1.patch("/links/{code}", response_model=LinkOut,
          responses={404: {"model": Problem}, **ERRORS}, summary="Change a link")
async def patch_link(code: Code, body: LinkPatch, svc: Service, actor: Writer) -> LinkOut:
    changes = {k: getattr(body, k) for k in body.model_fields_set if k in PATCHABLE}
    return render(svc, await svc.update(code, changes, actor))


@v1.delete("/links/{code}", status_code=204, responses={404: {"model": Problem}},
           summary="Delete a link")
async def delete_link(code: Code, svc: Service, actor: Writer) -> Response:
    await svc.delete(code, actor)
    return Response(status_code=204)


legacy = APIRouter(tags=["original design"])


@legacy.post("/shorten", status_code=201, response_model=ShortenOut,
             responses=ERRORS | RATE_LIMITED,
             summary="Shorten a URL (the original design's route)")
async def shorten(body: ShortenIn, svc: Service, actor: Creator,
                  _limit: CreationLimit) -> JSONResponse:
    result = await svc.create(NewLink(url=body.url), actor)
    code = result.link.code
    short_url = f"{svc.base_url}/r/{code}"
    return JSONResponse({"code": code, "short_url": short_url, "url": result.link.url},
                        status_code=201 if result.created else 200,
                        headers={"Location": short_url})


site = APIRouter(include_in_schema=False)


@site.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    return HTMLResponse(pages.home())


@site.post("/", response_class=HTMLResponse)
async def home_submit(request: Request, svc: Service) -> HTMLResponse:
    body = await request.body()
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True) if len(body) < 70_000 \
        else {}
    url = (form.get("url") or [""])[0]
    code = (form.get("code") or [""])[0].strip() or None
    try:
        actor = await creator(request, await actor_of(request))  # SNIP_ANONYMOUS_CREATE
        await charge_creation(request, actor)  # rate limit: per key, or per client address
        result = await svc.create(NewLink(url=url, code=code), actor)
    except SnipError as exc:
        status = problems.STATUS.get(type(exc), 400)
        return HTMLResponse(pages.home(error=exc.detail, url=url), status_code=status,
                            headers=problems.error_headers(exc, status))
    link = result.link
    return HTMLResponse(pages.home(short_url=svc.short_url(link.code), target=link.url),
                        status_code=201 if result.created else 200)


@site.get("/{code}+", response_class=HTMLResponse)
async def preview(code: Code, svc: Service, request: Request) -> HTMLResponse:
    try:
        link = await svc.get(code)
    except LinkNotFound:
        await unknown_code(request)  # enumeration through previews counts as on the redirect
        raise
    verdict = link.verdict(utcnow())
    gone = None if not verdict.gone else {"disabled": "disabled", "expired": "expired",
                                          "exhausted": "out of visits"}[verdict.value]
    return HTMLResponse(pages.preview(code=link.code, url=link.url, title=link.title,
                                      created_at=link.created_at,
                                      short_url=svc.short_url(link.code), gone_reason=gone,
                                      blocked=link.blocked),
                        headers={"Cache-Control": "no-cache"})


@site.get("/problems/{kind}", response_class=HTMLResponse)
async def problem_type(kind: str) -> HTMLResponse:
    text = problems.DESCRIPTIONS.get(kind)
    if text is None:
        return HTMLResponse(pages.problem_page(404, "Unknown problem type", kind), 404)
    return HTMLResponse(pages.page(kind, f"<h1>{kind}</h1><p>{text}</p>"))


@site.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@site.get("/readyz")
async def readyz(svc: Service) -> JSONResponse:
    """Ready when the database answers; Redis down is `degraded` (redirects still work)."""
    checks = await svc.health()
    if checks["database"]["status"] != "ok":
        status, code = "unavailable", 503
    elif any(c["status"] != "ok" for c in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JSONResponse({"status": status, "checks": checks}, code,
                        headers={"Cache-Control": "no-store"})


@site.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics of every worker process (optionally behind a bearer token)."""
    recorder = request.app.state.metrics
    if recorder is None:
        raise HTTPException(404, "metrics are turned off (SNIP_METRICS_ENABLED=false)")
    token = request.app.state.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "a bearer token is required for /metrics",
                                headers={"WWW-Authenticate": "Bearer"})
    return Response(await recorder.render(), media_type=CONTENT_TYPE_LATEST)


def create_api(svc: LinkService, *, metrics: SnipMetrics | None = None,
               metrics_token: str | None = None, **fastapi_kwargs: Any) -> FastAPI:
    """The framework app: API, pages and docs. The redirect is mounted in front of it."""
    app = FastAPI(
        title="snip",
        version=__version__,
        description="A self-hosted URL shortener. Errors are RFC 9457 problem details.",
        **fastapi_kwargs,
    )
    app.state.service = svc
    app.state.metrics = metrics
    app.state.metrics_token = metrics_token
    problems.install(app)
    problems.document(app, Problem)
    from snip.entrypoints import api_abuse, api_accounts, api_clicks, api_lifecycle

    app.include_router(v1)
    app.include_router(api_clicks.router)
    app.include_router(api_accounts.router)
    app.include_router(api_lifecycle.router)
    app.include_router(api_abuse.router)
    app.include_router(legacy)
    app.include_router(site)
    app.include_router(api_lifecycle.pages)  # /{code} for password forms: after every site route
    return app
