"""The domain blocklist and link reports (issue 5): parse, call the abuse service, render.

`POST /api/v1/reports` is open to anyone (rate-limited per client address) and answers 202
whether or not the code exists; everything else needs an admin key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from snip.domain.accounts import ADMIN, Actor
from snip.entrypoints.auth import CurrentActor, require
from snip.entrypoints.clients import ClientAddresses, parse_networks
from snip.entrypoints.limits import ReportLimit
from snip.service_layer.abuse import (
    MAX_COMMENT,
    AbuseService,
    BlockedDomain,
    BlocklistChange,
    Report,
)

router = APIRouter(prefix="/api/v1", tags=["abuse"])

Admin = Annotated[Actor, Depends(require(ADMIN))]
Reason = Literal["phishing", "malware", "spam", "other"]
Action = Literal["dismiss", "disable", "block-domain"]


def abuse(request: Request) -> AbuseService:
    service: AbuseService | None = request.app.state.snip.abuse
    if service is None:  # pragma: no cover (bootstrap always wires it)
        raise RuntimeError("no abuse service is wired")
    return service


Abuse = Annotated[AbuseService, Depends(abuse)]


# -- the blocklist ---------------------------------------------------------------------------


class DomainsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domains: list[Annotated[str, Field(max_length=300)]] = Field(
        min_length=1, max_length=10_000,
        description="Domains (or IP addresses); each also blocks its subdomains",
        examples=[["phish.example", "bad.example.net"]])
    reason: str | None = Field(None, max_length=500)


class BlockedDomainOut(BaseModel):
    domain: str
    source: str = Field(description="setting, file (from the settings at start) or admin")
    reason: str | None
    added_by: str
    created_at: datetime
    links: int = Field(description="Links to it or its subdomains blocked now")


class BlocklistOut(BaseModel):
    items: list[BlockedDomainOut]
    total: int


class ChangeOut(BaseModel):
    domains: list[str] = Field(description="The domains added or removed (others already were)")
    links: int = Field(description="Links blocked or released by this change")


def _domain(d: BlockedDomain) -> BlockedDomainOut:
    return BlockedDomainOut(domain=d.domain, source=d.source, reason=d.reason,
                            added_by=d.added_by, created_at=d.created_at, links=d.links)


def _change(change: BlocklistChange) -> ChangeOut:
    return ChangeOut(domains=change.domains, links=len(change.links))


@router.get("/blocklist", response_model=BlocklistOut, summary="List blocked domains (admin)")
async def list_blocklist(_admin: Admin, svc: Abuse) -> BlocklistOut:
    items = [_domain(d) for d in await svc.blocked_domains()]
    return BlocklistOut(items=items, total=len(items))


@router.post("/blocklist", response_model=ChangeOut,
             summary="Block domains and their links now (admin)")
async def add_blocklist(body: DomainsIn, admin: Admin, svc: Abuse, response: Response
                        ) -> ChangeOut:
    change = await svc.block(body.domains, actor=admin, reason=body.reason)
    response.status_code = 201 if change.domains else 200
    return _change(change)


@router.delete("/blocklist/{domain}", response_model=ChangeOut,
               summary="Unblock a domain and the links only it blocked (admin)")
async def remove_one(domain: Annotated[str, Path(max_length=300)], admin: Admin, svc: Abuse
                     ) -> ChangeOut:
    return _change(await svc.unblock([domain], actor=admin))


@router.delete("/blocklist", response_model=ChangeOut,
               summary="Unblock several domains (admin)")
async def remove_many(body: DomainsIn, admin: Admin, svc: Abuse) -> ChangeOut:
    return _change(await svc.unblock(body.domains, actor=admin))


# -- reports ---------------------------------------------------------------------------------


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link: str = Field(max_length=2000, description="The short code or the whole short link",
                      examples=["https://s.example.com/abc1234"])
    reason: Reason
    comment: str | None = Field(None, max_length=MAX_COMMENT)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class ReportOut(BaseModel):
    id: int
    code: str
    reason: str
    comment: str | None
    reporter: str
    status: str
    action: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    url: str | None = Field(description="The link's destination now (null: deleted)")
    owner: str | None
    disabled: bool | None
    blocked: bool | None
    open_reports: int = Field(description="Open reports of the same link")


class ReportPage(BaseModel):
    items: list[ReportOut]
    total: int


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="dismiss; disable the link (410); or block-domain: "
                           "block the link's host (or `domain`) and every link to it")
    domain: str | None = Field(None, max_length=300,
                               description="For block-domain: a parent domain to block instead")


class ResolvedOut(BaseModel):
    report: ReportOut
    resolved: list[int] = Field(description="Ids of every open report of the link now resolved")


def _report(r: Report) -> ReportOut:
    return ReportOut(id=r.id, code=r.code, reason=r.reason, comment=r.comment,
                     reporter=r.reporter, status=r.status, action=r.action,
                     resolved_by=r.resolved_by, resolved_at=r.resolved_at,
                     created_at=r.created_at, url=r.url, owner=r.owner, disabled=r.disabled,
                     blocked=r.blocked, open_reports=r.open_reports)


@router.post("/reports", status_code=202, response_model=Accepted,
             summary="Report an abusive link (anyone; no key needed)")
async def report(body: ReportIn, request: Request, actor: CurrentActor, svc: Abuse,
                 _limit: ReportLimit) -> Accepted:
    settings = request.app.state.snip.settings
    address = ClientAddresses(parse_networks(settings.trusted_proxies)).of(dict(request.scope))
    await svc.report(body.link, reason=body.reason, comment=body.comment,
                     reporter=actor.name, address=address)
    return Accepted(detail="thank you; the people who run this service will look at it")


@router.get("/reports", response_model=ReportPage, summary="List reports (admin)")
async def list_reports(
    _admin: Admin, svc: Abuse,
    status: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
    code: Annotated[str | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ReportPage:
    items, total = await svc.reports(status=None if status == "all" else status, code=code,
                                     limit=per_page, offset=(page - 1) * per_page)
    return ReportPage(items=[_report(r) for r in items], total=total)


@router.post("/reports/{report_id}/resolve", response_model=ResolvedOut,
             summary="Resolve a report: dismiss, disable the link or block its domain (admin)")
async def resolve(report_id: Annotated[int, Path(ge=1, le=2**62)], body: ResolveIn, admin: Admin,
                  svc: Abuse) -> ResolvedOut:
    resolved, ids = await svc.resolve(report_id, body.action, actor=admin, domain=body.domain)
    return ResolvedOut(report=_report(resolved), resolved=ids)
