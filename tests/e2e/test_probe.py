"""`snip probe` against a real `snip serve`: the canary, each way a probe fails, loop mode's metrics."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from snip.entrypoints.probe import (
    DEFAULT_CANARY_CODE,
    DEFAULT_CANARY_URL,
    Canary,
    ProbeMetrics,
    Prober,
    make_client,
    parse_duration,
)
from tests.helpers import (
    ADMIN_KEY,
    CliProcess,
    Server,
    free_port,
    http,
    metric_samples,
    run_cli,
    snip_env,
    start_cli,
)

pytestmark = pytest.mark.e2e

CANARY_API = f"/api/v1/links/{DEFAULT_CANARY_CODE}"
WAIT = 15.0  # the longest any wait for the prober may take


def probe_once(tmp_path: Path, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`snip probe --target TARGET --once ARGS`; no SNIP_* settings, no proxies."""
    done = run_cli("probe", "--target", target, "--once", *args, env=snip_env(), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def only_line(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    result: dict[str, Any] = json.loads(lines[0])
    assert set(result) == {"time", "target", "success", "status", "latency_ms", "reason"}
    return result


def assert_fails(done: subprocess.CompletedProcess[str], *reasons: str) -> dict[str, Any]:
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stderr.startswith("Error: probe failed: "), done.stderr
    result = only_line(done.stdout)
    assert result["success"] is False
    for reason in reasons:
        assert reason in done.stderr, done.stderr
        assert reason in result["reason"]
    return result


def links_like_the_canary(base_url: str) -> tuple[int, int]:
    """(links with the canary's code, links to the canary's URL) on the server."""
    items = http("GET", f"{base_url}/api/v1/links?per_page=1000").json()["items"]
    return (sum(item["code"] == DEFAULT_CANARY_CODE for item in items),
            sum(item["url"] == DEFAULT_CANARY_URL for item in items))


def test_once_creates_the_canary_and_then_reuses_it(tmp_path: Path, base_url: str) -> None:
    assert http("GET", base_url + CANARY_API).status == 404

    first = probe_once(tmp_path, base_url)
    assert first.returncode == 0, first.stderr
    result = only_line(first.stdout)
    assert result["success"] is True
    assert (result["target"], result["status"], result["reason"]) == (base_url, 302, None)
    assert 0 < result["latency_ms"] < 1000
    canary = http("GET", base_url + CANARY_API)
    assert canary.status == 200
    assert (canary.json()["url"], canary.json()["disabled"]) == (DEFAULT_CANARY_URL, False)

    second = probe_once(tmp_path, base_url, "--api-key", ADMIN_KEY)
    assert second.returncode == 0, second.stderr
    assert only_line(second.stdout)["success"] is True
    assert ADMIN_KEY not in second.stdout + second.stderr
    assert links_like_the_canary(base_url) == (1, 1)
    # Visits are written in batches, within about SNIP_VISIT_FLUSH_INTERVAL of the redirect.
    deadline = time.monotonic() + 10
    while http("GET", base_url + CANARY_API).json()["visits"] < 1:
        assert time.monotonic() < deadline, "the probe's visit was never counted"
        time.sleep(0.1)


class LoseTheFirstRead(httpx.BaseTransport):
    """A real transport, except the first read of the canary answers 404: as if another prober
    created the canary between this prober's GET and its POST."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.seen: list[tuple[str, str, int]] = []
        self.lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == CANARY_API and not self.lost:
            self.lost = True
            response = httpx.Response(404, json={"detail": "no such link"})
        else:
            response = self.real.handle_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response

    def close(self) -> None:
        self.real.close()


def test_a_canary_created_by_another_prober_meanwhile_is_reused(base_url: str) -> None:
    made = http("POST", f"{base_url}/api/v1/links",
                {"url": DEFAULT_CANARY_URL, "code": DEFAULT_CANARY_CODE})
    assert made.status == 201, made.body
    transport = LoseTheFirstRead()
    metrics = ProbeMetrics()
    with httpx.Client(transport=transport, follow_redirects=False, timeout=5) as client:
        prober = Prober(client, base_url, Canary(DEFAULT_CANARY_CODE, DEFAULT_CANARY_URL),
                        max_latency=5.0, metrics=metrics, api_key=ADMIN_KEY)
        result = prober.probe()

    assert result.success, result.reason
    assert ("POST", "/api/v1/links", 409) in transport.seen
    assert transport.seen[-1] == ("GET", f"/{DEFAULT_CANARY_CODE}", 302)
    assert links_like_the_canary(base_url) == (1, 1)
    assert metrics.registry.get_sample_value("snip_probe_success") == 1.0
    assert metrics.registry.get_sample_value("snip_probe_runs_total", {"result": "success"}) == 1


def test_fails_when_the_canary_points_elsewhere(tmp_path: Path, base_url: str) -> None:
    assert probe_once(tmp_path, base_url).returncode == 0
    changed = http("PATCH", base_url + CANARY_API, {"url": "https://example.org/elsewhere"})
    assert changed.status == 200, changed.body

    result = assert_fails(probe_once(tmp_path, base_url),
                          "points to 'https://example.org/elsewhere'",
                          "redirected to 'https://example.org/elsewhere'")
    assert result["status"] == 302


def test_fails_when_the_canary_is_disabled(tmp_path: Path, base_url: str) -> None:
    assert probe_once(tmp_path, base_url).returncode == 0
    assert http("PATCH", base_url + CANARY_API, {"disabled": True}).status == 200

    result = assert_fails(probe_once(tmp_path, base_url), "is disabled", "answered 410")
    assert result["status"] == 410


def test_fails_when_the_canary_cannot_be_created(tmp_path: Path, base_url: str) -> None:
    # A destination on snip itself is refused (422): the reason is the server's.
    done = probe_once(tmp_path, base_url, "--canary-url", f"{base_url}/loop")
    assert_fails(done, "could not create the canary", "422", "points back at this shortener")


def test_fails_when_the_target_is_down(tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = assert_fails(probe_once(tmp_path, target, "--timeout", "2s"),
                          "GET /healthz failed: could not connect")
    assert time.monotonic() - started < WAIT
    assert (result["status"], result["latency_ms"]) == (None, None)


def test_fails_when_the_target_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        target = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        assert_fails(probe_once(tmp_path, target, "--timeout", "0.5s"),
                     "GET /healthz failed: timed out (ReadTimeout, see --timeout)")
        assert time.monotonic() - started < WAIT


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("probe", "--target", "http://127.0.0.1:9", "--metrics-host", "127.0.0.1",
                       "--metrics-port", str(port), env=snip_env(), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot serve metrics on 127.0.0.1:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_fails_on_latency(tmp_path: Path, base_url: str) -> None:
    result = assert_fails(probe_once(tmp_path, base_url, "--max-latency", "0.000001s"),
                          "over --max-latency 0.001 ms")
    assert result["status"] == 302


@pytest.mark.parametrize("args", [
    ["--interval", "0s"],
    ["--interval", "soon"],
    ["--timeout", "-1"],
    ["--max-latency", "1 fortnight"],
    ["--target", "ftp://example.com"],
    ["--target", "example.com"],
    ["--canary-code", "api"],
    ["--canary-code", "has space"],
    ["--canary-url", "javascript:alert(1)"],
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = run_cli("probe", "--target", "http://127.0.0.1:9", "--once", *args, env=snip_env(),
                   cwd=tmp_path)
    assert done.returncode == 2, f"{done.returncode}: {done.stdout}{done.stderr}"
    assert "Invalid value for" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


def test_help_describes_probe(tmp_path: Path) -> None:
    top = run_cli("--help", env=snip_env(), cwd=tmp_path)
    assert top.returncode == 0 and "probe" in top.stdout, top.stdout + top.stderr
    done = run_cli("probe", "--help", env=snip_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for option in ("--target", "--interval", "--once", "--timeout", "--max-latency",
                   "--canary-code", "--canary-url", "--api-key", "--metrics-host",
                   "--metrics-port", "--use-env-proxy"):
        assert option in done.stdout
    assert run_cli("probe", env=snip_env(), cwd=tmp_path).returncode == 2  # --target is required


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("2.5", 2.5), ("30", 30.0), ("1m30s", 90.0),
    ("1h", 3600.0), (" 0.2s ", 0.2), ("0.000001s", 0.000001),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


# -- loop mode ------------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """The prober's metrics, or {} while its server is not listening yet."""
    try:
        reply = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
    except OSError:
        return {}
    assert reply.status == 200, reply.body
    return metric_samples(reply.body.decode())


def scrape_until(prober: CliProcess, port: int, ready: Callable[[dict[str, float]], bool]
                 ) -> dict[str, float]:
    deadline = time.monotonic() + WAIT
    while True:
        assert prober.process.poll() is None, f"the prober exited\n{prober.stderr()}"
        samples = scrape(port)
        if samples and ready(samples):
            return samples
        if time.monotonic() > deadline:
            prober.kill()
            raise AssertionError(f"metrics not ready within {WAIT} s: {samples}\n"
                                 f"--- stdout ---\n{prober.stdout()}\n"
                                 f"--- stderr ---\n{prober.stderr()}")
        time.sleep(0.1)


def start_loop(tmp_path: Path, target: str, port: int) -> CliProcess:
    return start_cli("probe", "--target", target, "--interval", "0.2s", "--timeout", "2s",
                     "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
                     env=snip_env(), cwd=tmp_path, name="probe")


def test_loop_exports_metrics_and_stops_on_sigterm(tmp_path: Path, server: Server) -> None:
    port = free_port()
    prober = start_loop(tmp_path, server.base_url, port)
    try:
        time.sleep(1.0)
        samples = scrape_until(prober, port,
                               lambda s: s.get('snip_probe_runs_total{result="success"}', 0) >= 2)
        assert samples["snip_probe_success"] == 1.0
        assert samples["snip_probe_duration_seconds_count"] >= 2
        assert samples['snip_probe_runs_total{result="failure"}'] == 0
        assert samples["snip_probe_last_success_timestamp_seconds"] > time.time() - WAIT
        started = time.monotonic()
        assert prober.stop() == 0, prober.stderr()
        assert time.monotonic() - started < 5
    finally:
        prober.kill()
    lines = [json.loads(line) for line in prober.stdout().splitlines()]
    assert len(lines) >= 2 and all(line["success"] for line in lines), lines
    assert "Traceback" not in prober.stderr(), prober.stderr()
    assert links_like_the_canary(server.base_url) == (1, 1)


def test_loop_survives_failing_probes_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    prober = start_loop(tmp_path, f"http://127.0.0.1:{free_port()}", port)
    try:
        samples = scrape_until(prober, port,
                               lambda s: s.get('snip_probe_runs_total{result="failure"}', 0) >= 3)
        assert samples["snip_probe_success"] == 0.0
        assert samples["snip_probe_last_success_timestamp_seconds"] == 0.0
        assert samples["snip_probe_duration_seconds_count"] == 0  # no redirect was reached
        prober.process.send_signal(signal.SIGINT)
        assert prober.process.wait(5) == 0, prober.stderr()
    finally:
        prober.kill()
    lines = [json.loads(line) for line in prober.stdout().splitlines()]
    assert len(lines) >= 3 and not any(line["success"] for line in lines), lines
    assert all("could not connect" in line["reason"] for line in lines)
    assert "Traceback" not in prober.stderr(), prober.stderr()


def test_make_client_ignores_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with make_client(1.0) as client:
        assert client.follow_redirects is False
        assert client.trust_env is False
