"""What every `snip` command shares: settings read with a clear error, and a started snip.

Its own module, so the command modules (`cli_*.py`) and `cli.py`, which registers them, can
all import it without a cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from snip.bootstrap import Snip, running
from snip.config import Settings
from snip.domain.errors import SnipError

T = TypeVar("T")


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: a bad SNIP_* variable
        raise click.ClickException(f"bad configuration: {exc}") from exc


def run(use: Callable[[Snip], Awaitable[T]]) -> T:
    """Start snip's services (migrating the database if needed), run `use`, close cleanly."""

    async def main() -> T:
        async with running(settings()) as snip:
            return await use(snip)

    try:
        return asyncio.run(main())
    except SnipError as exc:
        raise click.ClickException(exc.detail) from exc
