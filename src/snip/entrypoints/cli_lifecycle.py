"""`snip import FILE` and `snip export`: links in and out in bulk, streaming both ways."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

import click

from snip.adapters import formats
from snip.adapters.sql.bulk import SqlLinkImportStore
from snip.bootstrap import Snip, running
from snip.domain.errors import SnipError
from snip.entrypoints.cli_common import settings as read_settings
from snip.service_layer.importer import Importer, ImportReport, Rules

BYTES_PER_ROW_GUESS = 60  # for the progress bar's length and the pool decision


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", *formats.FORMATS]), default="auto",
              show_default=True, help="File format; auto looks at the name and header")
@click.option("--owner", default=None, metavar="USER",
              help="Owner of every imported link (default: the file's owner column, else none)")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Validation processes (default: one per CPU; 1 validates in this process)")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-row messages")
def import_links(file: Path, fmt: str, owner: str | None, workers: int | None,
                 quiet: bool) -> None:
    """Import links from CSV, JSON, or a YOURLS, Shlink or Bitly export.

    Invalid rows are reported with their row number and skipped. Running the same import
    again creates nothing twice.
    """
    settings = read_settings()
    try:
        kind = formats.detect(file) if fmt == "auto" else fmt
        rows = formats.read(file, kind)
    except (formats.FormatError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    size_hint = max(1, file.stat().st_size // BYTES_PER_ROW_GUESS)
    rules = Rules(base_url=settings.base_url, max_url_bytes=settings.max_url_bytes,
                  code_length=settings.code_length,
                  custom_code_max_length=settings.custom_code_max_length,
                  default_redirect_status=settings.default_redirect_status, owner=owner)
    shown = [0]

    def on_invalid(row: int, reason: str) -> None:
        shown[0] += 1
        if not quiet and shown[0] <= 100:
            click.echo(f"row {row}: {reason}", err=True)
        elif not quiet and shown[0] == 101:
            click.echo("... (further invalid rows are counted, not listed)", err=True)

    async def run(snip: Snip, progress: Callable[[int], None] | None) -> ImportReport:
        # The domain blocklist applies as on create (its in-memory copy, loaded at start).
        # Other URL checkers (remote services) are not asked a million questions.
        blocklist = getattr(getattr(getattr(snip, "abuse", None), "checker", None),
                            "blocklist", None)
        importer = Importer(SqlLinkImportStore(snip.engine),
                            replace(rules, blocklist=blocklist), workers=workers)
        return await importer.run(rows, size_hint=size_hint, on_invalid=on_invalid,
                                  on_progress=progress)

    async def main() -> ImportReport:
        async with running(settings) as snip:
            if quiet:
                return await run(snip, None)
            with click.progressbar(length=size_hint, label=f"Importing {file.name} ({kind})",
                                   file=sys.stderr, show_pos=True) as bar:
                report = await run(snip, bar.update)
                bar.length = bar.pos  # the guess was a guess: end at 100 %
                return report

    try:
        report = asyncio.run(main())
    except (formats.FormatError, SnipError) as exc:
        raise click.ClickException(getattr(exc, "detail", None) or str(exc)) from exc
    click.echo(f"read {report.read}: created {report.created}, skipped {report.skipped} "
               f"(already there), invalid {report.invalid}")


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(list(formats.EXPORT_FORMATS)), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output)")
def export_links(fmt: str, output: Path | None) -> None:
    """Write every link as CSV or JSON, streaming (a million links never sit in memory).

    The file holds password hashes of protected links (so that an import restores them):
    keep it as safe as the database.
    """
    settings = read_settings()

    async def main(out: IO[str]) -> int:
        count = 0
        async with running(settings) as snip:
            writer = formats.writer(fmt, out)
            async for batch in SqlLinkImportStore(snip.engine).iter_links(2000):
                writer.write(batch)
                count += len(batch)
            writer.close()
        return count

    try:
        if output is None:
            count = asyncio.run(main(sys.stdout))
        else:
            with output.open("w", encoding="utf-8", newline="") as f:
                count = asyncio.run(main(f))
    except SnipError as exc:
        raise click.ClickException(exc.detail) from exc
    if output is not None:
        click.echo(f"exported {count} links to {output}", err=True)
