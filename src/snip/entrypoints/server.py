"""Running the ASGI app: granian, chosen by measurement (see docs/performance.md)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops

from snip.adapters.sql.migrate import upgrade
from snip.config import Settings
from snip.entrypoints import logs


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Migrate once, then start `workers` processes sharing the port; SIGTERM drains them."""
    logs.configure(settings.log_level, settings.log_format)
    if settings.auto_migrate:
        upgrade(settings.database_url)
    from snip.entrypoints.cli_accounts import first_start

    first_start(settings)  # on a database without users: the admin, its key printed once
    # The workers must not race each other on migrations: the parent has just done them.
    os.environ["SNIP_AUTO_MIGRATE"] = "false"
    if "base_url" not in settings.model_fields_set:
        # No public origin configured: short links point where this server listens.
        shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
        os.environ["SNIP_BASE_URL"] = f"http://{shown}:{port}"
    made_metrics_dir = _metrics_dir(settings)
    loop = Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio
    try:
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
            log_dictconfig=logs.dict_config(settings.log_level, settings.log_format),
            log_access=False,  # snip's own access log (SNIP_ACCESS_LOG) knows route templates
            backlog=2048,
            workers_kill_timeout=30,
        ).serve()
    finally:
        if made_metrics_dir is not None:
            shutil.rmtree(made_metrics_dir, ignore_errors=True)


def _metrics_dir(settings: Settings) -> Path | None:
    """The directory the workers share metrics through: fresh at every start (counters reset).

    Returns the directory if it was made here (and so is removed on exit).
    """
    if not settings.metrics_enabled:
        return None
    if settings.metrics_dir:
        directory = Path(settings.metrics_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink(missing_ok=True)
        return None
    made = Path(tempfile.mkdtemp(prefix="snip-metrics-"))
    os.environ["SNIP_METRICS_DIR"] = str(made)
    return made
