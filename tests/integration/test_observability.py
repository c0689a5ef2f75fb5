"""Metrics, request ids, readiness and logs, as an operator relies on them."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from snip.adapters.metrics import SnipMetrics
from snip.bootstrap import create_app
from snip.config import Settings


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")) and line.split(" ")[0] != name:
            continue
        metric, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if all(found.get(k) == v for k, v in labels.items()) and metric.split("{")[0] == name:
            return float(value)
    return None


async def test_metrics_count_redirects_by_outcome_and_route_template(
    client: httpx.AsyncClient,
) -> None:
    made = (await client.post("/api/v1/links", json={"url": "https://example.com/m"})).json()
    code = made["code"]
    gone = (await client.post("/api/v1/links", json={"url": "https://example.com/g",
                                                    "max_visits": 1})).json()["code"]
    await client.get(f"/{code}")  # miss (first lookup), then cached
    await client.get(f"/{code}")
    await client.get(f"/{code}")
    await client.get("/nothingHere")
    await client.get(f"/{gone}")
    await client.get(f"/{gone}")  # out of visits: 410
    await client.get(f"/api/v1/links/{code}")
    text = (await client.get("/metrics")).text

    assert code not in text  # a short code is never a label
    assert sample(text, "snip_redirects_total", outcome="hit") == 2
    assert sample(text, "snip_redirects_total", outcome="miss") == 2
    assert sample(text, "snip_redirects_total", outcome="not_found") == 1
    assert sample(text, "snip_redirects_total", outcome="gone") == 1
    assert sample(text, "snip_http_requests_total", route="/{code}", method="GET",
                  status="302") == 4
    assert sample(text, "snip_http_requests_total", route="/{code}", method="GET",
                  status="404") == 1
    assert sample(text, "snip_http_requests_total", route="/api/v1/links", method="POST",
                  status="201") == 2
    assert sample(text, "snip_http_requests_total", route="/api/v1/links/{code}",
                  method="GET", status="200") == 1
    assert sample(text, "snip_http_request_duration_seconds_count", route="/{code}",
                  method="GET") == 6
    assert sample(text, "snip_cache_requests_total", tier="memory", result="hit") == 3
    assert sample(text, "snip_cache_requests_total", tier="memory", result="miss") == 3
    assert (sample(text, "snip_db_query_duration_seconds_count", operation="get_target") or 0) >= 3
    assert sample(text, "snip_links_total") == 2
    assert (sample(text, "snip_database_size_bytes") or 0) > 0
    assert sample(text, "snip_db_up") == 1
    assert sample(text, "snip_clicks_dropped_total") == 0
    assert "snip_build_info{" in text


async def test_metrics_token(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "s3cret-token"}))
    async with LifespanManager(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://snip.test"
    ) as c:
        assert (await c.get("/metrics")).status_code == 401
        bad = await c.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        good = await c.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200 and "snip_http_requests_total" in good.text


async def test_metrics_merge_every_worker_process(tmp_path: Path) -> None:
    a, b = SnipMetrics(tmp_path), SnipMetrics(tmp_path)
    a.redirects.labels("hit").inc(3)
    b.redirects.labels("hit").inc(4)
    b.http_duration.labels("/{code}", "GET").observe(0.002)
    a.clicks_queue.labels().set(5)
    b.clicks_queue.labels().set(7)
    a.write()
    b.write()
    text = (await a.render()).decode()
    assert sample(text, "snip_redirects_total", outcome="hit") == 7
    assert sample(text, "snip_clicks_queue_depth") == 12
    assert sample(text, "snip_http_request_duration_seconds_bucket", route="/{code}",
                  method="GET", le="0.0025") == 1
    assert sample(text, "snip_http_request_duration_seconds_bucket", route="/{code}",
                  method="GET", le="0.001") == 0
    # A process that stopped writing (it exited) keeps its counts, but not its gauges.
    gone = SnipMetrics(tmp_path)
    gone.redirects.labels("hit").inc(10)
    gone.clicks_queue.labels().set(100)
    gone.write()
    assert gone._file is not None
    os.utime(gone._file, (0, 0))
    text = (await a.render()).decode()
    assert sample(text, "snip_redirects_total", outcome="hit") == 17
    assert sample(text, "snip_clicks_queue_depth") == 12


async def test_request_ids_are_echoed_or_made(client: httpx.AsyncClient) -> None:
    made = (await client.post("/api/v1/links", json={"url": "https://example.com/id"})).json()
    for path in [f"/{made['code']}", "/api/v1/links", "/nope"]:
        given = await client.get(path, headers={"X-Request-ID": "trace-123"})
        assert given.headers["x-request-id"] == "trace-123"
        fresh_a = (await client.get(path)).headers["x-request-id"]
        fresh_b = (await client.get(path)).headers["x-request-id"]
        assert fresh_a and fresh_b and fresh_a != fresh_b
    hostile = await client.get("/api/v1/links", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    body = (await client.get("/readyz")).json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert "redis" not in body["checks"]


async def test_logs_hold_no_secret_and_no_full_client_address(
    settings: Settings, capsys: pytest.CaptureFixture[str],
) -> None:
    app = create_app(settings.model_copy(update={"access_log": True, "log_format": "json"}))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.77", 51234))
    async with LifespanManager(app), httpx.AsyncClient(transport=transport,
                                                       base_url="http://snip.test") as c:
        key = "sk-live-" + "0123456789" * 4  # a real key: the first admin's
        await app.state.snip.accounts.bootstrap(key)  # type: ignore[attr-defined]
        secret = {"Authorization": f"Bearer {key}", "X-Api-Key": key}
        made = await c.post("/api/v1/links", json={"url": "https://example.com/l?token=zzz"},
                            headers=secret)
        await c.get(f"/{made.json()['code']}", headers=secret)
        await c.get("/api/v1/links", headers=secret)
        logging.getLogger("snip.test").warning("probe", extra={"password": "hunter2"})
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "snip.access"]
    assert len(access) >= 3
    assert all(line["client"] == "203.0.113.0" for line in access)
    for leaked in ("sk-live", "203.0.113.77", "hunter2"):
        assert leaked not in err
