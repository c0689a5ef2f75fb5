"""The `snip` command line: serve, manage links and migrate, through the service layer."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TypeVar

import click

from snip.bootstrap import Snip
from snip.domain.links import Link, LinkQuery
from snip.entrypoints.cli_common import run as _run
from snip.entrypoints.cli_common import settings as _settings
from snip.service_layer.links import NewLink

T = TypeVar("T")


def _as_dict(snip: Snip, link: Link) -> dict[str, Any]:
    return {
        "code": link.code,
        "short_url": snip.links.short_url(link.code),
        "url": link.url,
        "title": link.title,
        "tags": list(link.tags),
        "created_at": link.created_at.isoformat(),
        "updated_at": link.updated_at.isoformat(),
        "expires_at": link.expires_at.isoformat() if link.expires_at else None,
        "max_visits": link.max_visits,
        "visits": link.visits,
        "disabled": link.disabled,
        "redirect_status": link.redirect_status,
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snip")
def main() -> None:
    """snip: a self-hosted URL shortener. Settings come from SNIP_* environment variables."""


@main.command()
@click.option("--host", default=None, help="Address to bind (default SNIP_HOST or 127.0.0.1)")
@click.option("--port", type=int, default=None, help="Port (default SNIP_PORT or 8000)")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default SNIP_WORKERS or 1)")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP server."""
    from snip.entrypoints.server import serve as run_server

    settings = _settings()
    run_server(settings, host=host or settings.host, port=settings.port if port is None else port,
               workers=workers or settings.workers)


@main.command()
@click.argument("url")
@click.option("--code", help="Custom short code")
@click.option("--title", help="A title for the link")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more)")
@click.option("--expires-at", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
                                                   "%Y-%m-%d %H:%M:%S"]),
              help="Expiry time, UTC")
@click.option("--max-visits", type=click.IntRange(1), help="Visits before the link runs out")
@click.option("--status", "redirect_status", type=click.Choice(["301", "302", "307", "308"]),
              help="Redirect status")
@click.option("--reuse/--no-reuse", default=None, help="Reuse an existing link for this URL")
@click.option("--json", "as_json", is_flag=True, help="Print the link as JSON")
def shorten(url: str, code: str | None, title: str | None, tags: tuple[str, ...],
            expires_at: datetime | None, max_visits: int | None, redirect_status: str | None,
            reuse: bool | None, as_json: bool) -> None:
    """Shorten URL and print the short link."""

    async def use(snip: Snip) -> dict[str, Any]:
        result = await snip.links.create(NewLink(
            url=url, code=code, title=title, tags=list(tags) or None, expires_at=expires_at,
            max_visits=max_visits,
            redirect_status=int(redirect_status) if redirect_status else None, reuse=reuse,
        ))
        return _as_dict(snip, result.link) | {"created": result.created}

    out = _run(use)
    click.echo(json.dumps(out, indent=2) if as_json else out["short_url"])


@main.command(name="list")
@click.option("--search", "-q", help="Search URL and title")
@click.option("--tag", "tags", multiple=True, help="Only links with this tag (repeatable)")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def list_links(search: str | None, tags: tuple[str, ...], limit: int, offset: int,
               as_json: bool) -> None:
    """List links, newest first."""

    async def use(snip: Snip) -> tuple[int, list[dict[str, Any]]]:
        page = await snip.links.list(LinkQuery(search=search, tags=tuple(t.lower() for t in tags),
                                               limit=limit, offset=offset))
        return page.total, [_as_dict(snip, link) for link in page.items]

    total, items = _run(use)
    if as_json:
        click.echo(json.dumps({"total": total, "items": items}, indent=2))
        return
    for item in items:
        click.echo(f"{item['code']}\t{item['visits']}\t{item['url']}")
    click.echo(f"{len(items)} of {total} links", err=True)


@main.command()
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def show(code: str, as_json: bool) -> None:
    """Show one link."""

    async def use(snip: Snip) -> dict[str, Any]:
        return _as_dict(snip, await snip.links.get(code))

    item = _run(use)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    for key, value in item.items():
        if isinstance(value, list):
            value = ", ".join(value)
        click.echo(f"{key:16}{'' if value is None else value}")


@main.command()
@click.argument("code")
def delete(code: str) -> None:
    """Delete a link; its short URL answers 404 from then on."""

    async def use(snip: Snip) -> None:
        await snip.links.delete(code)

    _run(use)
    click.echo(f"deleted {code}")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from snip.adapters.sql.migrate import upgrade as run_upgrade

    settings = _settings()
    run_upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}", err=True)


@main.command()
@click.option("--target", required=True, metavar="URL",
              help="Base URL of the snip instance to check, e.g. https://s.example.com")
@click.option("--interval", default="30s", show_default=True, metavar="DURATION",
              help="Time between probes in loop mode (30s, 1m, 500ms, plain seconds)")
@click.option("--once", is_flag=True, help="Probe once; exit 0 on success, 1 on failure")
@click.option("--timeout", default="5s", show_default=True, metavar="DURATION",
              help="Timeout of each HTTP request")
@click.option("--max-latency", default="1s", show_default=True, metavar="DURATION",
              help="Slowest acceptable redirect")
@click.option("--canary-code", default="snip-probe-canary", show_default=True,
              help="Code of the canary link (created if missing)")
@click.option("--canary-url", default="https://example.com/snip-probe", show_default=True,
              help="Where the canary link must redirect")
@click.option("--api-key", envvar="SNIP_PROBE_API_KEY", default=None,
              help="Sent as a bearer token on API calls (or SNIP_PROBE_API_KEY)")
@click.option("--metrics-host", default="0.0.0.0", show_default=True,  # noqa: S104
              help="Address for the prober's /metrics")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Port for /metrics (default 9109 in loop mode; with --once, only if given)")
@click.option("--use-env-proxy", is_flag=True, help="Honour HTTP(S)_PROXY and friends")
def probe(target: str, interval: str, once: bool, timeout: str, max_latency: str,
          canary_code: str, canary_url: str, api_key: str | None, metrics_host: str,
          metrics_port: int | None, use_env_proxy: bool) -> None:
    """Check a snip instance over HTTP as a client would; export Prometheus metrics."""
    from snip.entrypoints.probe import command as run_probe

    sys.exit(run_probe(target=target, interval=interval, once=once, timeout=timeout,
                       max_latency=max_latency, canary_code=canary_code, canary_url=canary_url,
                       api_key=api_key, metrics_host=metrics_host, metrics_port=metrics_port,
                       use_env_proxy=use_env_proxy))


from snip.entrypoints.cli_worker import worker  # noqa: E402

main.add_command(worker)
from snip.entrypoints.cli_clicks import clicks  # noqa: E402

main.add_command(clicks)
from snip.entrypoints.cli_accounts import register as _register_accounts  # noqa: E402

_register_accounts(main)  # users, keys, audit
from snip.entrypoints.cli_lifecycle import export_links, import_links  # noqa: E402

main.add_command(import_links); main.add_command(export_links)  # noqa: E702

from snip.entrypoints.cli_abuse import register as _register_abuse  # noqa: E402

_register_abuse(main)  # blocklist, reports


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
