"""`snip blocklist add|remove|list|import` and `snip reports list|resolve` (issue 5).

The CLI acts as the system: it has the database. A change reaches running servers through
the database (their blocklists reload within SNIP_BLOCKLIST_REFRESH seconds) and, with
SNIP_REDIS_URL set, their caches at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from snip.bootstrap import Snip
from snip.domain.accounts import Actor
from snip.domain.checks import parse_domains
from snip.domain.errors import InvalidLink
from snip.entrypoints.cli_common import run
from snip.service_layer.abuse import ACTIONS, AbuseService, BlocklistChange, Report

SYSTEM = Actor.system()



def _abuse(snip: Snip) -> AbuseService:
    if snip.abuse is None:  # pragma: no cover - bootstrap always builds it
        raise click.ClickException("the abuse service is not wired")
    return snip.abuse


def _said(change: BlocklistChange, verb: str, asked: int) -> str:
    already = asked - len(change.domains)
    tail = f" ({already} already {'listed' if verb == 'blocked' else 'absent'})" if already else ""
    return f"{verb} {len(change.domains)} domains, {len(change.links)} links{tail}"


@click.group()
def blocklist() -> None:
    """The domain blocklist: a domain blocks its subdomains; their links show a warning page."""


@blocklist.command(name="add")
@click.argument("domains", nargs=-1, required=True)
@click.option("--reason", help="Why (kept with the entry)")
def add(domains: tuple[str, ...], reason: str | None) -> None:
    """Block DOMAINS and every existing link to them."""

    async def use(snip: Snip) -> BlocklistChange:
        return await _abuse(snip).block(domains, actor=SYSTEM, reason=reason)

    click.echo(_said(run(use), "blocked", len(set(domains))))


@blocklist.command(name="remove")
@click.argument("domains", nargs=-1, required=True)
def remove(domains: tuple[str, ...]) -> None:
    """Unblock DOMAINS and release the links only they blocked."""

    async def use(snip: Snip) -> BlocklistChange:
        return await _abuse(snip).unblock(domains, actor=SYSTEM)

    click.echo(_said(run(use), "unblocked", len(set(domains))))


@blocklist.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def list_domains(as_json: bool) -> None:
    """List blocked domains, with where each comes from and the links it blocks."""

    async def use(snip: Snip) -> list[dict[str, Any]]:
        return [{"domain": d.domain, "source": d.source, "reason": d.reason,
                 "added_by": d.added_by, "created_at": d.created_at.isoformat(),
                 "links": d.links} for d in await _abuse(snip).blocked_domains()]

    items = run(use)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for item in items:
        click.echo(f"{item['domain']}\t{item['source']}\t{item['links']}\t{item['reason'] or ''}")
    click.echo(f"{len(items)} domains", err=True)


@blocklist.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", help="Why (kept with each new entry)")
def import_file(file: Path, reason: str | None) -> None:
    """Block every domain in FILE (one per line, `#` comments), all checked before any is added."""
    try:
        domains = parse_domains(file.read_text(encoding="utf-8").splitlines(), source=str(file))
    except InvalidLink as exc:
        raise click.ClickException(exc.detail) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from exc

    async def use(snip: Snip) -> BlocklistChange:
        return await _abuse(snip).block(domains, actor=SYSTEM, reason=reason)

    click.echo(_said(run(use), "blocked", len(domains)))


@click.group()
def reports() -> None:
    """Reports of abusive links sent to POST /api/v1/reports."""


def _report_dict(r: Report) -> dict[str, Any]:
    return {"id": r.id, "code": r.code, "reason": r.reason, "comment": r.comment,
            "status": r.status, "action": r.action, "url": r.url, "owner": r.owner,
            "open_reports": r.open_reports, "created_at": r.created_at.isoformat()}


@reports.command(name="list")
@click.option("--status", type=click.Choice(["open", "resolved", "all"]), default="open",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def list_reports(status: str, limit: int, as_json: bool) -> None:
    """List reports, newest first."""

    async def use(snip: Snip) -> tuple[list[dict[str, Any]], int]:
        items, total = await _abuse(snip).reports(
            status=None if status == "all" else status, limit=limit)
        return [_report_dict(r) for r in items], total

    items, total = run(use)
    if as_json:
        click.echo(json.dumps({"total": total, "items": items}, indent=2))
        return
    for r in items:
        click.echo(f"{r['id']}\t{r['code']}\t{r['reason']}\t{r['open_reports']}\t{r['status']}"
                   f"\t{r['url'] or '(deleted)'}")
    click.echo(f"{len(items)} of {total} reports", err=True)


@reports.command(name="resolve")
@click.argument("report_id", type=click.IntRange(1))
@click.option("--action", type=click.Choice(ACTIONS), required=True,
              help="dismiss; disable the link (410); or block-domain (its host, or --domain)")
@click.option("--domain", help="With block-domain: a parent domain to block instead")
def resolve(report_id: int, action: str, domain: str | None) -> None:
    """Resolve REPORT_ID and every other open report of the same link."""

    async def use(snip: Snip) -> tuple[Report, list[int]]:
        return await _abuse(snip).resolve(report_id, action, actor=SYSTEM, domain=domain)

    report, ids = run(use)
    click.echo(f"{action}: link {report.code}; resolved reports {', '.join(map(str, ids)) or '-'}")


def register(main: click.Group) -> None:
    main.add_command(blocklist)
    main.add_command(reports)
