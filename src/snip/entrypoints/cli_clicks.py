"""`snip clicks`: click statistics of a link and the purge of old raw clicks (issue 4)."""

from __future__ import annotations

import json
from typing import Any

import click

from snip.bootstrap import Snip
from snip.domain.accounts import Actor
from snip.entrypoints.cli_common import run, settings
from snip.service_layer.stats import (
    InvalidQuery,
    PurgeResult,
    StatsService,
    as_json,
    parse_time,
)


def _stats(snip: Snip) -> StatsService:
    if snip.stats is None:  # pragma: no cover - bootstrap always builds it
        raise click.ClickException("the stats service is not wired")
    return snip.stats



@click.group()
def clicks() -> None:
    """Click statistics and retention of raw clicks."""


@clicks.command()
@click.option("--older-than", "older_than", type=click.IntRange(0), default=None,
              metavar="DAYS",
              help="Purge whole UTC days older than DAYS days (default SNIP_CLICK_RETENTION_DAYS)")
def purge(older_than: int | None) -> None:
    """Roll up raw clicks of old days into daily counts and delete them.

    One transaction per day; stats stay the same. Safe while servers run and purge too.
    """
    days = settings().click_retention_days if older_than is None else older_than
    if days == 0 and older_than is None:
        click.echo("retention is off (SNIP_CLICK_RETENTION_DAYS=0): nothing purged", err=True)
        return

    async def use(snip: Snip) -> PurgeResult:
        return await _stats(snip).purge(days)

    result: PurgeResult = run(use)
    for day in result.days:
        click.echo(f"rolled up {day}")
    click.echo(f"purged {result.clicks} clicks in {len(result.days)} days "
               f"(kept the last {days} days)", err=True)


@clicks.command(name="stats")
@click.argument("code")
@click.option("--from", "start", default=None, metavar="TIME",
              help="ISO 8601 start, UTC if no zone (default: 30 days before --to)")
@click.option("--to", "end", default=None, metavar="TIME", help="ISO 8601 end (default: now)")
@click.option("--interval", type=click.Choice(["hour", "day"]), default="day", show_default=True)
@click.option("--json", "json_out", is_flag=True, help="Print JSON (as the API's stats route)")
def stats_command(code: str, start: str | None, end: str | None, interval: str,
                  json_out: bool) -> None:
    """Show click totals, the series and top values of CODE."""

    async def use(snip: Snip) -> dict[str, Any]:
        svc = _stats(snip)
        win = svc.window(parse_time("from", start), parse_time("to", end),
                         "hour" if interval == "hour" else "day")
        return as_json(await svc.link_stats(Actor.system(), code, win), code)

    try:
        out = run(use)
    except InvalidQuery as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
    if json_out:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{code}: {out['total']} clicks ({out['humans']} humans, {out['bots']} bots) "
               f"from {out['from']} to {out['to']}")
    for bucket in out["series"]:
        if bucket["total"]:
            click.echo(f"  {bucket['start']}  {bucket['humans']:>8} humans "
                       f"{bucket['bots']:>8} bots")
    for name, items in out["top"].items():
        if items:
            click.echo(f"{name}: " + ", ".join(f"{t['value']} ({t['total']})" for t in items))

