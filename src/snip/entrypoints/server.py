"""Running the ASGI app: granian, chosen by measurement (see docs/performance.md)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops

from snip.adapters.sql.migrate import upgrade
from snip.config import Settings
from snip.entrypoints import logs

log = logging.getLogger(__name__)


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
    writer = ClickWriterProcess.start() if _wants_writer(settings) else None
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
        if writer is not None:  # after the workers: their last clicks are in its sockets
            writer.stop()
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


def _wants_writer(settings: Settings) -> bool:
    """The click-writer process serves the embedded mode; with Redis the stream does its job."""
    return settings.track_clicks and settings.clicks_writer == "process" and not settings.redis_url


class ClickWriterProcess:
    """The click writer (`snip.entrypoints.click_writer`), started and kept running.

    This process makes the listening socket and keeps it, so workers can connect (and their
    frames queue) before the writer is up or while it restarts; a writer that exits while
    snip is serving is started again after a second. `stop()` closes its stdin, which tells it
    to read every connection to its end, write what it holds and exit.
    """

    STOP_TIMEOUT = 60.0

    def __init__(self, directory: str, listening: socket.socket) -> None:
        self._directory = directory
        self._listening = listening
        self._lock = threading.Lock()
        self._stopping = False
        self._proc = self._spawn()
        self._watch = threading.Thread(target=self._supervise, name="click-writer", daemon=True)
        self._watch.start()

    @classmethod
    def start(cls) -> ClickWriterProcess:
        directory = tempfile.mkdtemp(prefix="snip-clicks-")  # 0700: only this user connects
        path = os.path.join(directory, "writer.sock")
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.bind(path)
        listening.listen(256)
        os.environ["SNIP_CLICKS_WRITER_SOCKET"] = path  # the workers inherit it
        return cls(directory, listening)

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self._listening.fileno()
        return subprocess.Popen(  # noqa: S603 (this interpreter, snip's own module)
            [sys.executable, "-m", "snip.entrypoints.click_writer", str(fd)],
            stdin=subprocess.PIPE, pass_fds=(fd,),
            start_new_session=True,  # a terminal's Ctrl-C reaches snip serve, not the writer
        )

    def _supervise(self) -> None:
        while True:
            proc = self._proc
            code = proc.wait()
            with self._lock:
                if self._stopping:
                    return
            log.error("the click writer exited (status %s); starting it again", code)
            time.sleep(1.0)
            with self._lock:
                if self._stopping:
                    return
                self._proc = self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("the click writer did not stop in %.0f s; killing it", self.STOP_TIMEOUT)
            proc.kill()
            proc.wait()
        if proc.returncode:
            log.error("the click writer exited with status %s", proc.returncode)
        self._listening.close()
        shutil.rmtree(self._directory, ignore_errors=True)
