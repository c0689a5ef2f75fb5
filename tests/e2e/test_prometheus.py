"""A real Prometheus on loopback scrapes a real `snip serve --workers 2`; we read the counters back.

Every request is counted exactly once, whichever worker served it: the workers share their
counts through a directory (written once a second) and /metrics merges them.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    LoopbackProcess,
    Reply,
    Server,
    free_port,
    http,
    metric_samples,
    required_binary,
    snip_env,
    terminate,
    wait_for_log,
)

pytestmark = pytest.mark.e2e

SCRAPE_INTERVAL = 1.0  # seconds, in prometheus.yml
METRICS_WRITE_INTERVAL = 1.0  # each snip worker writes its counts to the shared directory
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
QUERY_TIMEOUT = 20.0

LINKS = 5
REDIRECTS = 200
NOT_FOUND = 7
UNKNOWN_CODES = [f"nosuch{i}" for i in range(NOT_FOUND)]  # look like codes, are not stored
LABEL_VALUE = re.compile(r'="((?:[^"\\]|\\.)*)"')

REDIRECTS_302 = 'sum(snip_http_requests_total{route="/{code}",method="GET",status="302"})'
REDIRECTS_404 = 'sum(snip_http_requests_total{route="/{code}",method="GET",status="404"})'
SAMPLE_302 = 'snip_http_requests_total{method="GET",route="/{code}",status="302"}'
REDIRECT_OUTCOMES = "snip_redirects_total"
UP = 'up{job="snip"}'
LATENCY_P90 = ('histogram_quantile(0.9, sum by (le) '
               '(snip_http_request_duration_seconds_bucket{route="/{code}",method="GET"}))')


# -- Prometheus -----------------------------------------------------------------------------------


@pytest.fixture
def prometheus_binary() -> str:
    return required_binary("prometheus", "Debian: apt-get install prometheus")


@dataclass
class Prometheus(LoopbackProcess):
    """A Prometheus server of the test's own, on a loopback port."""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the result vector (possibly empty)."""
        reply = http("GET", f"{self.base_url}/api/v1/query?"
                            + urllib.parse.urlencode({"query": promql}))
        assert reply.status == 200, f"{promql}: {reply.status} {reply.body!r}"
        answer = reply.json()
        assert answer["status"] == "success", answer
        assert answer["data"]["resultType"] == "vector", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a query that yields at most one sample (None: no sample)."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql}: {result}"
        return float(result[0]["value"][1]) if result else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to `timeout` s, else SIGKILL and fail; the exit status (idempotent)."""
        return terminate(self.process, timeout, "prometheus", self.log, self.kill)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)


def _prometheus_ready(prometheus: Prometheus, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            if http("GET", f"{prometheus.base_url}/-/ready", timeout=1).status == 200:
                return True
        time.sleep(0.1)
    return False


def _start_prometheus(binary: str, directory: Path, target_port: int,
                      attempts: int = 3) -> Prometheus:
    """Prometheus on a free loopback port scraping 127.0.0.1:`target_port`; once /-/ready."""
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL:g}s\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL:g}s\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL:g}s\n"
        "scrape_configs:\n"
        "  - job_name: snip\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    log_path = directory / "prometheus.log"
    for _attempt in range(attempts):
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={directory / 'data'}",
                 "--storage.tsdb.retention.time=1h",
                 f"--web.listen-address=127.0.0.1:{port}"],
                cwd=directory, env=snip_env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        prometheus = Prometheus(port=port, process=process, log_path=log_path)
        if _prometheus_ready(prometheus, READY_TIMEOUT):
            return prometheus
        if process.poll() is None:
            prometheus.kill()
            raise AssertionError(f"prometheus not ready within {READY_TIMEOUT} s\n"
                                 f"--- log ---\n{prometheus.log()}")
        if "address already in use" not in prometheus.log():
            raise AssertionError(f"prometheus exited with {process.returncode} on start\n"
                                 f"--- log ---\n{prometheus.log()}")
        # Someone took the port between free_port() and the bind: try another.
    raise AssertionError(f"prometheus found no free port in {attempts} tries")


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path,
                     start_snip: Callable[..., Server]) -> Iterator[Callable[[int], Prometheus]]:
    """Start Prometheus scraping a port; stopped (bounded) at teardown, before the snip servers."""
    started: list[Prometheus] = []

    def start(target_port: int) -> Prometheus:
        directory = tmp_path / f"prometheus-{len(started)}"
        directory.mkdir()
        prometheus = _start_prometheus(prometheus_binary, directory, target_port)
        started.append(prometheus)
        return prometheus

    yield start

    for prometheus in started:
        prometheus.stop()


# -- snip -----------------------------------------------------------------------------------------


def wait_for_two_workers(server: Server, metrics_dir: Path) -> None:
    """Return once both workers of `server` run and share their metrics through `metrics_dir`."""
    for worker in (1, 2):
        wait_for_log(server, f"Started worker-{worker}", timeout=READY_TIMEOUT)
    deadline = time.monotonic() + READY_TIMEOUT
    while len(list(metrics_dir.glob("*.json"))) < 2:  # each worker writes one at start-up
        assert time.monotonic() < deadline, (f"two workers' metrics files not in {metrics_dir}"
                                             f"\n--- log ---\n{server.log()}")
        time.sleep(0.05)


def get_on_new_connection(url: str) -> Reply:
    """urllib sends `Connection: close`: every request is a new connection, any worker's."""
    return http("GET", url)


def worker_of(reply: Reply) -> str:
    """Each worker's request ids share a random prefix (`<8 hex>-<counter>`)."""
    return reply.headers["x-request-id"].rsplit("-", 1)[0]


def poll(what: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Call `what()` until `done(value)`, at most `timeout` s; the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


# -- the test -------------------------------------------------------------------------------------


def test_prometheus_reads_exact_request_counts_from_two_workers(
    tmp_path: Path, server_env: dict[str, str], start_snip: Callable[..., Server],
    start_prometheus: Callable[[int], Prometheus],
) -> None:
    metrics_dir = tmp_path / "metrics"
    server = start_snip({**server_env, "SNIP_METRICS_DIR": str(metrics_dir)}, workers=2)
    # Prometheus applies new targets up to 5 s after it starts: let that overlap the workers'.
    prometheus = start_prometheus(server.port)
    wait_for_two_workers(server, metrics_dir)
    up = poll(lambda: prometheus.scalar(UP), lambda v: v == 1.0, QUERY_TIMEOUT)
    assert up == 1.0, f"{UP} = {up}\n--- prometheus log ---\n{prometheus.log()}"

    codes = []
    for i in range(LINKS):
        made = http("POST", f"{server.base_url}/api/v1/links",
                    {"url": f"https://example.com/target/{i}"})
        assert made.status == 201, made.body
        codes.append(made.json()["code"])

    urls = [f"{server.base_url}/{codes[i % LINKS]}" for i in range(REDIRECTS)]
    urls += [f"{server.base_url}/{code}" for code in UNKNOWN_CODES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(get_on_new_connection, urls, timeout=60))
    statuses = [reply.status for reply in replies]
    assert statuses == [302] * REDIRECTS + [404] * NOT_FOUND
    assert all(reply.headers["location"].startswith("https://example.com/target/")
               for reply in replies[:REDIRECTS])
    served_by = {worker_of(reply) for reply in replies}
    assert len(served_by) == 2, f"one worker served all {len(replies)} requests: {served_by}"

    # Each worker writes its counts once a second; then Prometheus must scrape twice.
    time.sleep(2 * METRICS_WRITE_INTERVAL + 2 * SCRAPE_INTERVAL)
    counted = poll(lambda: prometheus.scalar(REDIRECTS_302), lambda v: v == REDIRECTS,
                   QUERY_TIMEOUT)
    failure = f"\n--- prometheus log ---\n{prometheus.log()}\n--- snip log ---\n{server.log()}"
    assert counted == REDIRECTS, f"{REDIRECTS_302} = {counted}, sent {REDIRECTS}" + failure

    # The same exact count whichever worker answers the scrape (new connections, both workers).
    with ThreadPoolExecutor(max_workers=8) as pool:
        scrapes = list(pool.map(get_on_new_connection, [f"{server.base_url}/metrics"] * 16,
                                timeout=60))
    by_worker = {worker_of(reply): metric_samples(reply.body.decode())[SAMPLE_302]
                 for reply in scrapes}
    assert set(by_worker.values()) == {REDIRECTS}, by_worker

    assert prometheus.scalar(REDIRECTS_404) == NOT_FOUND
    outcomes = {s["metric"]["outcome"]: float(s["value"][1])
                for s in prometheus.query(REDIRECT_OUTCOMES)}
    assert outcomes["hit"] + outcomes["miss"] == REDIRECTS, outcomes
    assert outcomes["not_found"] == NOT_FOUND, outcomes
    assert outcomes["gone"] == outcomes["unavailable"] == 0, outcomes
    targets = prometheus.query(UP)
    assert [float(s["value"][1]) for s in targets] == [1.0], targets
    assert targets[0]["metric"]["instance"] == f"127.0.0.1:{server.port}", targets
    latency = prometheus.scalar(LATENCY_P90)
    assert latency is not None and math.isfinite(latency) and latency > 0, latency

    # Label values are route templates: no short code ever becomes a label (or a series).
    exposition = http("GET", f"{server.base_url}/metrics")
    assert exposition.status == 200
    text = exposition.body.decode()
    labels = set(LABEL_VALUE.findall(text))
    assert "/{code}" in labels, labels
    leaked = {code for code in [*codes, *UNKNOWN_CODES] if any(code in v for v in labels)}
    assert not leaked, f"short codes in label values: {leaked}\n{text}"
    stored = prometheus.query('count by (__name__, route) ({job="snip", route!=""})')
    routes = {s["metric"]["route"] for s in stored}
    assert not {code for code in [*codes, *UNKNOWN_CODES] if any(code in r for r in routes)}
