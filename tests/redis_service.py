"""The Redis the tests use: SNIP_TEST_REDIS_URL (default the local server), skipped if missing."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from tests.helpers import missing

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The test Redis URL; skips (or fails under CI=true) when nothing answers there."""
    url = os.environ.get("SNIP_TEST_REDIS_URL", DEFAULT_URL)
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            pass
    except OSError as exc:
        message = f"Redis not reachable at {url} ({exc}); set SNIP_TEST_REDIS_URL"
        missing(message)
    return url
