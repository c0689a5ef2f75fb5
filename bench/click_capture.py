"""What recording a click costs the redirect's own process, per redirect, in each mode.

    .venv/bin/python bench/click_capture.py [--n 500000] [--repeat 5]

No server, no database: each mode's hot-path call timed over `--n` calls with `timeit` (best
of `--repeat`), on a request scope shaped like a browser's (host, user agent, referrer, accept):
- `VisitTally.record`: click tracking off (one dict increment);
- `ClickRecorder.record`: inline mode and Redis mode (a deque append of the scope);
- `ClickRecorder.record` with `capture=capture_request`: the embedded default, where the
  request is reduced at once to what the click-writer process needs;
- `capture_request` alone (the part of the above that reads the scope);
- `marshal.dumps` of a 500-click frame, per click (what the hand-off adds later, per click),
  captured from requests with header objects of their own, as a server gives them, and the
  frame's size per click;
- the old way, for comparison: a `Click` built per redirect with tracking off (`_bare`).
Prints a Markdown table, with the command, date and Python version.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from snip.adapters.click_writer import frame  # noqa: E402
from snip.service_layer.clicks import ClickRecorder, _bare, capture_request  # noqa: E402
from snip.service_layer.tally import VisitTally  # noqa: E402

UA = (b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      b"Chrome/120.0.0.0 Safari/537.36")
SCOPE: dict[str, Any] = {
    "type": "http", "method": "GET", "path": "/c00001", "client": ("127.0.0.1", 40000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", UA),
                (b"referer", b"https://news.example.org/item?id=1"), (b"accept", b"*/*")],
}


class _Nowhere:
    async def write(self, batch: Any) -> int:
        return len(batch)

    async def add_visits(self, counts: Any) -> None:
        return None


def _fresh(scope: dict[str, Any]) -> dict[str, Any]:
    """`scope` with new objects for its headers' names and values, as a server makes them."""
    return {**scope, "headers": [(bytes(bytearray(name)), bytes(bytearray(value)))
                                 for name, value in scope["headers"]]}


def best(fn: Any, n: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=repeat)) / n * 1e6


async def measure(n: int, repeat: int) -> tuple[list[tuple[str, float]], float]:
    """The table's rows (name, µs per redirect), and the frame's size in bytes per click."""
    big = 10 ** 12  # queues that never fill during the measurement
    tally = VisitTally(_Nowhere())
    inline = ClickRecorder(_Nowhere(), queue_size=big)
    forwarding = ClickRecorder(_Nowhere(), queue_size=big, capture=capture_request)
    # A server gives each request new header objects: capture 500 such requests (equal headers
    # are kept once, so the frame writes the agent once and refers back to it after).
    batch = [capture_request("c00001", 1.0, _fresh(SCOPE), True) for _ in range(500)]
    rows = [
        ("`VisitTally.record` (tracking off)",
         best(lambda: tally.record("c00001", SCOPE, True), n, repeat)),
        ("`ClickRecorder.record` (inline and Redis modes)",
         best(lambda: inline.record("c00001", SCOPE, True), n, repeat)),
        ("`ClickRecorder.record` with `capture_request` (the click-writer process)",
         best(lambda: forwarding.record("c00001", SCOPE, True), n, repeat)),
        ("`capture_request` alone", best(lambda: capture_request("c00001", 1.0, SCOPE, True),
                                         n, repeat)),
        ("`marshal.dumps` of a 500-click frame, per click",
         best(lambda: frame(batch), max(1, n // 500), repeat) / 500),
        ("a bare `Click` per redirect (tracking off before `VisitTally`)",
         best(lambda: _bare(("c00001", 1.0, SCOPE, True)), n, repeat)),
    ]
    return rows, len(frame(batch)) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows, frame_bytes = asyncio.run(measure(args.n, args.repeat))
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}\n")
    print("| per redirect | µs |")
    print("|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} |")
    print(f"\nThe frame (`snip.adapters.click_writer.frame`): {frame_bytes:.0f} bytes per click.")


if __name__ == "__main__":
    main()
