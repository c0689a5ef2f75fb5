"""The click-writer process: `snip serve` starts it beside its HTTP workers (embedded mode).

    python -m snip.entrypoints.click_writer FD

FD is a listening Unix socket that `snip serve` made and keeps (so workers can connect, and
queue, before this process is up or while it restarts). Settings come from the environment, as
for the workers. The process stops when its standard input closes: `snip serve` closes it once
every worker has exited, having sent its last clicks; then this process reads every connection
to its end, writes what it holds, and exits 0. SIGTERM does the same. SIGINT is ignored: a
Ctrl-C in a terminal goes to `snip serve`, which stops the workers first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys

from snip.config import Settings

log = logging.getLogger("snip.click_writer")

DRAIN_TIMEOUT = 30.0  # seconds to wait for workers still connected when told to stop
GC_THRESHOLD = 50_000  # allocations between young-generation collections (default 700)


async def run(settings: Settings, listening: socket.socket, stdin_fd: int | None) -> None:
    from snip.bootstrap import build_click_writer

    writer = build_click_writer(settings)
    server = await asyncio.start_unix_server(writer.server.handle, sock=listening)
    writer.start()
    # Every click passes through here as a handful of short-lived objects, tens of thousands
    # held at a time: keep what lives for the process out of the collector's walks, and walk
    # less often (the measured cost of the default thresholds: about 3 µs per click).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if stdin_fd is not None:
        def readable() -> None:
            try:
                data = os.read(stdin_fd, 4096)
            except OSError:
                data = b""
            if not data:  # snip serve closed our stdin (or died): time to stop
                loop.remove_reader(stdin_fd)
                stop.set()

        loop.add_reader(stdin_fd, readable)
    log.info("click writer ready (pid %d)", os.getpid())
    await stop.wait()
    # Every connection, open or waiting to be accepted, is read to its end before the writer
    # stops taking connections and writes what it holds.
    if not await writer.server.drain(listening, DRAIN_TIMEOUT):
        log.warning("workers still connected after %.0f s; stopping anyway", DRAIN_TIMEOUT)
        writer.server.cancel()
    server.close()
    await writer.close()
    log.info("click writer stopped: %d clicks written, %d dropped",
             writer.recorder.written, writer.recorder.dropped)


def main() -> None:
    from snip.entrypoints import logs

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listening = socket.socket(fileno=int(sys.argv[1]))
    stdin_fd = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.fileno()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(run(settings, listening, stdin_fd))


if __name__ == "__main__":
    main()
