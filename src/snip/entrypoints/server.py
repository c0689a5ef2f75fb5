"""Running the ASGI app: granian, chosen by measurement (see docs/performance.md)."""

from __future__ import annotations

import importlib.util
import os

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops

from snip.adapters.sql.migrate import upgrade
from snip.config import Settings


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Migrate once, then start `workers` processes sharing the port; SIGTERM drains them."""
    if settings.auto_migrate:
        upgrade(settings.database_url)
    # The workers must not race each other on migrations: the parent has just done them.
    os.environ["SNIP_AUTO_MIGRATE"] = "false"
    loop = Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio
    Granian(
        "snip.bootstrap:app_factory",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=loop,
        http=HTTPModes.http1,
        websockets=False,
        log_level=settings.log_level,  # type: ignore[arg-type]
        log_access=False,
        backlog=2048,
        workers_kill_timeout=30,
    ).serve()
