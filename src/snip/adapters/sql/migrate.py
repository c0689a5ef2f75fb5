"""Schema migrations: run Alembic's upgrade programmatically (on start and by `snip db upgrade`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision`, creating it if needed (blocking)."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """The same from inside an event loop: Alembic runs its own loop, so it gets a thread."""
    await asyncio.to_thread(upgrade, database_url, revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url))
