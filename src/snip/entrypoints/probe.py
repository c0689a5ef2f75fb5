"""`snip probe`: a synthetic client that checks a snip instance over HTTP and reports to Prometheus.

The prober is a client like any user: it may run on another site and talks to the target only
over HTTP (never to its database). One probe:

1. `GET /healthz` must answer 200;
2. the canary link must exist: `GET /api/v1/links/{code}`, and on 404 `POST /api/v1/links` with
   the code and URL (a 409 means another prober created it first: it is read back). An existing
   canary that points elsewhere or is disabled is a failure, reported as such;
3. `GET /{code}`, not followed, must answer 301, 302, 307 or 308 with `Location` exactly the
   canary URL (as snip normalises it), within `--max-latency`.

Each probe prints one JSON line (time, target, success, status, latency_ms, reason) and updates
the prober's own metrics registry: `snip_probe_success`, `snip_probe_duration_seconds` (the
redirect request), `snip_probe_runs_total{result}` and
`snip_probe_last_success_timestamp_seconds`. `--once` probes once and exits 0 or 1 (2 for a usage
error); otherwise it probes every `--interval` and serves /metrics until SIGTERM or SIGINT.

The redirect latency is that of the request alone, on the connection the probe's API calls
opened (kept alive): server time plus one network round trip, not TCP or TLS set-up.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import click
import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from snip import __version__
from snip.domain.codes import validate_custom_code
from snip.domain.errors import SnipError
from snip.domain.urls import normalise_url

DEFAULT_CANARY_CODE = "snip-probe-canary"
DEFAULT_CANARY_URL = "https://example.com/snip-probe"
DEFAULT_METRICS_PORT = 9109
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
CANARY_TITLE = "snip probe canary (do not edit)"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Loopback redirects take about a millisecond; a distant site hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`: `30s`, `1m`, `500ms`, `1h`, `1m30s`, or plain seconds (`2.5`); > 0."""
    spelled = text.strip().lower()
    try:
        seconds = float(spelled) if spelled and not spelled[-1].isalpha() else None
    except ValueError:
        seconds = None
    if seconds is None:
        parts = list(_DURATION_PART.finditer(spelled))
        if not parts or "".join(p.group(0) for p in parts) != spelled:
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 1m, 500ms, 2.5)")
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r} is not a positive, finite duration")
    return seconds


def redact(url: str) -> str:
    """`url` without user name or password, for output."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _check_target(target: str) -> str:
    """The target's base URL without a trailing slash; ValueError when it is not one."""
    parts = urlsplit(target.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact(target)!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ValueError(f"{redact(target)!r}: the target is a base URL, without query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{redact(target)!r}: {exc}") from None
    return target.strip().rstrip("/")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}".rstrip("0").rstrip(".") + " ms"


# -- results and metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """The link the prober follows: `url` is normalised, exactly what `Location` must say."""

    code: str
    url: str


@dataclass(frozen=True)
class ProbeResult:
    time: datetime
    target: str  # redacted: no credentials
    success: bool
    status: int | None  # the redirect's status, None when it was not reached
    latency: float | None  # the redirect request, seconds
    reason: str | None  # why it failed; None on success

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "target": self.target,
            "success": self.success,
            "status": self.status,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 3),
            "reason": self.reason,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


class ProbeMetrics:
    """The prober's metrics, in a registry of its own (not prometheus_client's global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.success = Gauge("snip_probe_success", "1 if the last probe succeeded, else 0",
                             registry=self.registry)
        self.duration = Histogram("snip_probe_duration_seconds",
                                  "Latency of the canary redirect request", buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self.runs = Counter("snip_probe_runs", "Probes run, by result", ["result"],
                            registry=self.registry)
        self.last_success = Gauge("snip_probe_last_success_timestamp_seconds",
                                  "Unix time of the last successful probe (0: none yet)",
                                  registry=self.registry)
        for result in ("success", "failure"):
            self.runs.labels(result=result)  # both series exist from the start, at 0

    def record(self, result: ProbeResult) -> None:
        if result.latency is not None:
            self.duration.observe(result.latency)
        self.success.set(1 if result.success else 0)
        self.runs.labels(result="success" if result.success else "failure").inc()
        if result.success:
            self.last_success.set(result.time.timestamp())


# -- one probe ------------------------------------------------------------------------------------


class ProbeFailed(Exception):
    """A check failed in a way that ends the probe; the message is the reason."""


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):  # its text says no more than "timed out"
        return f"timed out ({type(exc).__name__}, see --timeout)"
    text = str(exc)
    kind = "could not connect" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    return f"{kind}: {text}" if text else kind


def _detail(response: httpx.Response) -> str:
    """The problem detail of an error response, else the start of its body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    text = response.text.strip().replace("\n", " ")
    return text[:200] if text else "(empty body)"


class Prober:
    """Probes one snip instance through `client`; `probe()` never raises."""

    def __init__(
        self,
        client: httpx.Client,
        target: str,
        canary: Canary,
        *,
        max_latency: float,
        api_key: str | None = None,
        metrics: ProbeMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.target = target.rstrip("/")
        self.shown_target = redact(self.target)
        self.canary = canary
        self.max_latency = max_latency
        self.metrics = metrics
        self._api_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._clock = clock
        self._now = now

    def probe(self) -> ProbeResult:
        started = self._now()
        reasons: list[str] = []
        status: int | None = None
        latency: float | None = None
        try:
            reasons += self._check_health()
            reasons += self._ensure_canary()
            status, latency, problems = self._follow()
            reasons += problems
        except ProbeFailed as exc:
            reasons.append(str(exc))
        except Exception as exc:  # a bug or a surprise must fail this probe, not the prober
            reasons.append(f"probe error: {type(exc).__name__}: {exc}")
        result = ProbeResult(time=started, target=self.shown_target, success=not reasons,
                             status=status, latency=latency,
                             reason="; ".join(reasons) if reasons else None)
        if self.metrics is not None:
            self.metrics.record(result)
        return result

    def _request(self, method: str, path: str, *, api: bool = False,
                 body: Any = None) -> httpx.Response:
        try:
            return self.client.request(method, self.target + path, json=body,
                                       headers=self._api_headers if api else None)
        except httpx.HTTPError as exc:
            raise ProbeFailed(f"{method} {path} failed: {_describe(exc)}") from exc

    def _check_health(self) -> list[str]:
        response = self._request("GET", "/healthz")
        if response.status_code != 200:
            return [f"GET /healthz answered {response.status_code}, not 200"]
        return []

    def _ensure_canary(self) -> list[str]:
        """Read or create the canary; problems with an existing one (the redirect still runs)."""
        code = self.canary.code
        path = f"/api/v1/links/{code}"
        response = self._request("GET", path, api=True)
        if response.status_code == 404:
            created = self._request("POST", "/api/v1/links", api=True,
                                    body={"url": self.canary.url, "code": code,
                                          "title": CANARY_TITLE})
            if created.status_code == 409:  # another prober created it between our GET and POST
                response = self._request("GET", path, api=True)
            elif created.status_code == 201:
                response = created
            else:
                raise ProbeFailed(f"could not create the canary {code!r}: POST /api/v1/links "
                                  f"answered {created.status_code}: {_detail(created)}")
        if response.status_code != 200 and response.status_code != 201:
            raise ProbeFailed(f"could not read the canary {code!r}: GET {path} answered "
                              f"{response.status_code}: {_detail(response)}")
        try:
            link = response.json()
        except ValueError:
            link = None
        if not isinstance(link, dict) or not isinstance(link.get("url"), str):
            raise ProbeFailed(f"GET {path} answered {response.status_code} without a link in JSON")
        problems = []
        if link["url"] != self.canary.url:
            problems.append(f"the canary {code!r} points to {link['url']!r}, not "
                            f"{self.canary.url!r} (someone changed it; restore it or use another "
                            "--canary-code)")
        if link.get("disabled") is True:
            problems.append(f"the canary {code!r} is disabled on the target")
        return problems

    def _follow(self) -> tuple[int, float, list[str]]:
        """Follow the short URL once, without following the redirect."""
        path = f"/{self.canary.code}"
        start = self._clock()
        response = self._request("GET", path)
        latency = self._clock() - start
        problems = []
        status = response.status_code
        if status not in REDIRECT_STATUSES:
            gone = " (the link is gone: disabled, expired or out of visits)" if status == 410 else ""
            problems.append(f"GET {path} answered {status}{gone}, not a redirect (301, 302, 307 "
                            "or 308)")
        else:
            location = response.headers.get("location")
            if location != self.canary.url:
                problems.append(f"GET {path} redirected to {location!r}, not {self.canary.url!r}")
        if latency > self.max_latency:
            problems.append(f"GET {path} took {_ms(latency)}, over --max-latency "
                            f"{_ms(self.max_latency)}")
        return status, latency, problems


# -- the command ----------------------------------------------------------------------------------


def make_client(timeout: float, *, use_env_proxy: bool = False) -> httpx.Client:
    """An HTTP client that answers a redirect as a response and ignores proxy variables."""
    return httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                        trust_env=use_env_proxy,
                        headers={"User-Agent": f"snip-probe/{__version__}"})


def run_loop(prober: Prober, interval: float, stop: threading.Event,
             emit: Callable[[ProbeResult], None]) -> None:
    """Probe every `interval` s (no catching up after a slow probe) until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        emit(prober.probe())
        next_at += interval
        now = time.monotonic()
        next_at = max(next_at, now)
        stop.wait(next_at - now)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs; the old handlers come back after."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _emit(result: ProbeResult, out: TextIO) -> None:
    out.write(result.to_json() + "\n")
    out.flush()


def command(*, target: str, interval: str, once: bool, timeout: str, max_latency: str,
            canary_code: str, canary_url: str, api_key: str | None, metrics_host: str,
            metrics_port: int | None, use_env_proxy: bool) -> int:
    """`snip probe`: check the options (click.BadParameter: exit 2), probe; the exit status."""
    durations = {}
    for name, text in (("--interval", interval), ("--timeout", timeout),
                       ("--max-latency", max_latency)):
        try:
            durations[name] = parse_duration(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{name}'") from None
    try:
        base = _check_target(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--target'") from None
    try:
        code = validate_custom_code(canary_code)
    except SnipError as exc:
        raise click.BadParameter(exc.detail, param_hint="'--canary-code'") from None
    try:
        url = normalise_url(canary_url)
    except SnipError as exc:
        raise click.BadParameter(exc.detail, param_hint="'--canary-url'") from None

    metrics = ProbeMetrics()
    port = metrics_port if metrics_port is not None or once else DEFAULT_METRICS_PORT
    with contextlib.ExitStack() as stack:
        stop = None if once else stack.enter_context(_stop_on_signals())
        if port is not None:
            try:
                server, _thread = start_http_server(port, addr=metrics_host,
                                                    registry=metrics.registry)
            except OSError as exc:
                raise click.BadParameter(f"cannot serve metrics on {metrics_host}:{port}: {exc}",
                                         param_hint="'--metrics-port'") from None
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        client = stack.enter_context(make_client(durations["--timeout"],
                                                 use_env_proxy=use_env_proxy))
        prober = Prober(client, base, Canary(code, url), max_latency=durations["--max-latency"],
                        api_key=api_key, metrics=metrics)
        if stop is not None:
            run_loop(prober, durations["--interval"], stop, lambda result: _emit(result, sys.stdout))
            status = EXIT_OK
        else:
            result = prober.probe()
            _emit(result, sys.stdout)
            if not result.success:
                sys.stderr.write(f"Error: probe failed: {result.reason}\n")
            status = EXIT_OK if result.success else EXIT_FAILED
    return status
