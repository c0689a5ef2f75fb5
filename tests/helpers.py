"""Helpers for tests that run snip as real processes: the CLI and `snip serve` on loopback.

Every wait here is bounded, so a broken server fails a test instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, NoReturn

import pytest

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0

_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

# The first admin's key of every server `snip_env` configures (SNIP_INITIAL_API_KEY), which
# `http()` sends by default; `http(..., key=None)` is an anonymous request.
ADMIN_KEY = "snip_test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"

# urllib without proxies (loopback only) and without following redirects: a 302 is an answer.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_FOLLOW = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(message: str) -> NoReturn:
    """A service or tool a test needs is absent: skip on a laptop, fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def terminate(process: subprocess.Popen[Any], timeout: float, what: str,
              output: Callable[[], str], kill: Callable[[], None]) -> int:
    """SIGTERM, wait up to `timeout` s, else `kill()` and fail showing `output()`.

    Returns the exit status; calling it again on a stopped process just returns that.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill()
            raise AssertionError(f"{what} ignored SIGTERM for {timeout} s\n--- output ---\n"
                                 f"{output()}") from None
    return int(process.returncode)


def required_binary(name: str, install_hint: str, *also: str) -> str:
    """The path of a program a test drives (on PATH, or one of `also`), else `missing()`."""
    found = shutil.which(name) or next((p for p in also if os.access(p, os.X_OK)), None)
    if found is None:
        missing(f"{name} is not installed ({install_hint})")
    return found


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def snip_env(**settings: str | None) -> dict[str, str]:
    """The current environment without any SNIP_* or proxy variable, plus `settings`.

    `settings` are given by field name (`database_url="..."` sets SNIP_DATABASE_URL); None
    leaves a variable unset so snip uses its default.
    """
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("SNIP_") and k.lower() not in _PROXY_VARS
    }
    # Servers bootstrap their first admin with ADMIN_KEY; `snip probe` uses it (None: unset).
    settings = {"initial_api_key": ADMIN_KEY, "probe_api_key": ADMIN_KEY, **settings}
    # Test servers create links freely (creation limits: tests/*/test_rate_limits.py).
    settings = {"rate_limit_create": "off", "rate_limit_anonymous_create": "off", **settings}
    for name, value in settings.items():
        if value is not None:
            env[f"SNIP_{name.upper()}"] = value
    return env


# -- HTTP, no proxies, no redirects followed ------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: Any = None, *, timeout: float = 10.0,
         key: str | None = ADMIN_KEY) -> Reply:
    """One HTTP request; any status (3xx, 4xx, 5xx) comes back as a Reply, not an exception.

    `key` goes as X-Api-Key (default: the test servers' first admin; None: anonymous).
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Api-Key"] = key
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _NO_FOLLOW.open(request, timeout=timeout) as response:
            return Reply(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, _lower(err.headers.items()), err.read())


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


# -- the CLI --------------------------------------------------------------------------------------


def run_cli(*args: str, env: Mapping[str, str], cwd: Path,
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m snip ARGS` as a user would run it; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "snip", *args],
        env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )


# -- `snip serve` ---------------------------------------------------------------------------------


@dataclass
class LoopbackProcess:
    """A server process of a test, listening on a loopback port, writing to a log file."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"


@dataclass
class Server(LoopbackProcess):
    """A running `snip serve` process on loopback."""

    env: dict[str, str] = field(repr=False)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; the exit status (idempotent)."""
        return terminate(self.process, timeout, "snip serve", self.log, self._kill)

    def _kill(self) -> None:
        # The server runs in its own process group (workers included); kill that group only.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def assert_stopped_cleanly(self) -> None:
        status = self.stop()
        log = self.log()
        assert status == 0, f"snip serve exited with {status}\n--- log ---\n{log}"
        assert "Traceback" not in log, f"snip serve logged an error\n--- log ---\n{log}"


def _wait_ready(server: Server, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with _OPENER.open(f"{server.base_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    return False


def start_server(cwd: Path, env: Mapping[str, str], *, workers: int | None = None,
                 log_name: str = "server.log", attempts: int = 3) -> Server:
    """Start `python -m snip serve` on a free loopback port; return once /healthz answers 200."""
    log_path = cwd / log_name
    for _attempt in range(attempts):
        port = free_port()
        command = [sys.executable, "-m", "snip", "serve", "--host", "127.0.0.1",
                   "--port", str(port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        server_env = {"SNIP_BASE_URL": f"http://127.0.0.1:{port}", **env}
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, cwd=cwd, env=server_env, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        server = Server(port, process, log_path, server_env)
        if _wait_ready(server, READY_TIMEOUT):
            return server
        if process.poll() is None:
            server._kill()
            raise AssertionError(f"snip serve not ready within {READY_TIMEOUT} s\n"
                                 f"--- log ---\n{server.log()}")
        if "address already in use" not in server.log().lower():
            raise AssertionError(f"snip serve exited with {process.returncode} on start\n"
                                 f"--- log ---\n{server.log()}")
        # Someone took the port between free_port() and the bind: try another.
    raise AssertionError(f"snip serve found no free port in {attempts} tries")


@contextlib.contextmanager
def serving(cwd: Path, env: Mapping[str, str], *, workers: int | None = None,
            log_name: str = "server.log") -> Iterator[Server]:
    """A server for the `with` block; on a normal exit it must stop cleanly on SIGTERM."""
    server = start_server(cwd, env, workers=workers, log_name=log_name)
    try:
        yield server
    except BaseException:
        with contextlib.suppress(AssertionError):
            server.stop()
        raise
    server.assert_stopped_cleanly()


# -- many requests at the same moment -------------------------------------------------------------


def wait_for_log(server: Server, text: str, timeout: float = 10.0) -> None:
    """Wait until `text` appears in the server's log (fail with the log after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise AssertionError(f"{text!r} not in the log within {timeout} s\n"
                                 f"--- log ---\n{server.log()}")
        time.sleep(0.05)


def all_at_once(n: int, method: str, url: str, body: Any = None, *,
                timeout: float = 30.0) -> list[Reply]:
    """`n` requests released together: all `n` connections are open before any request is sent.

    `body` (JSON) may be a function of the request's index. Every reply comes back, in order;
    a connection that cannot be opened or answered within `timeout` s fails the call.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    barrier = threading.Barrier(n, timeout=timeout)

    def send(i: int) -> Reply:
        connection = HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
            payload = body(i) if callable(body) else body
            data = None if payload is None else json.dumps(payload).encode()
            headers = {} if data is None else {"Content-Type": "application/json"}
            barrier.wait()
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            return Reply(response.status, _lower(response.getheaders()), response.read())
        except BaseException:
            barrier.abort()
            raise
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(send, range(n), timeout=timeout * 3))


# -- a long-running CLI command (`snip probe` in loop mode) ---------------------------------------


@dataclass
class CliProcess:
    """A `python -m snip ...` process in its own session, stdout and stderr to files."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to `timeout` s (else SIGKILL its group and fail); the exit status."""
        return terminate(self.process, timeout, repr(self.process.args), self.stderr, self.kill)

    def kill(self) -> None:
        """SIGKILL its process group, if it still runs (idempotent)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def start_cli(*args: str, env: Mapping[str, str], cwd: Path, name: str = "cli") -> CliProcess:
    """Start `python -m snip ARGS` in the background (`name`.out and `name`.err in `cwd`)."""
    stdout_path, stderr_path = cwd / f"{name}.out", cwd / f"{name}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "snip", *args], cwd=cwd, env=dict(env),
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return CliProcess(process, stdout_path, stderr_path)


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition as {'name{labels}': value}, comments left out."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def many_requests(n: int, method: str, url: str, body: Any = None, *, in_flight: int = 50,
                  timeout: float = 120.0) -> list[Reply]:
    """`n` requests, `in_flight` at a time, each thread on one keep-alive connection.

    Cheap on the client (stdlib http.client), so a load test measures the server. `body` (JSON)
    may be a function of the request's index; the replies come back in order. The whole run
    must end within `timeout` s.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    replies: list[Reply | None] = [None] * n
    indexes = iter(range(n))
    lock = threading.Lock()

    def sender(_: int) -> None:
        connection = HTTPConnection(host, port, timeout=min(30.0, timeout))
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(indexes, None)
                if i is None:
                    return
                payload = body(i) if callable(body) else body
                data = None if payload is None else json.dumps(payload).encode()
                headers = {} if data is None else {"Content-Type": "application/json"}
                connection.request(method, target, body=data, headers=headers)
                response = connection.getresponse()
                replies[i] = Reply(response.status, _lower(response.getheaders()), response.read())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        for done in pool.map(sender, range(in_flight), timeout=timeout + 30):
            assert done is None
    missing = sum(reply is None for reply in replies)
    assert not missing, f"{missing} of {n} requests not sent within {timeout} s"
    return [reply for reply in replies if reply is not None]
