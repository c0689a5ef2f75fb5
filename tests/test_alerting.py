"""Alerting as code: the Prometheus rules and config, their promtool unit tests, the runbooks
in docs/operations.md and the Grafana dashboard, checked against snip's metrics contract.

The promtool tests need `promtool` (Debian: `apt-get install prometheus`). Without it they
skip, except on CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import required_binary

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTS = PROMETHEUS / "rules" / "alerts.yml"
RECORDING = PROMETHEUS / "rules" / "recording.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "snip.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# The metrics snip and `snip probe` expose (the contract alerts and dashboards rely on).
COUNTERS = {
    "snip_http_requests_total", "snip_redirects_total", "snip_cache_requests_total",
    "snip_db_errors_total", "snip_redis_errors_total", "snip_clicks_written_total",
    "snip_clicks_dropped_total", "snip_probe_runs_total",
    "snip_rate_limited_total", "snip_auth_failures_total",
}
GAUGES = {
    "snip_db_pool_in_use", "snip_db_pool_size", "snip_database_size_bytes", "snip_db_up",
    "snip_redis_up", "snip_clicks_queue_depth", "snip_clicks_lag_seconds", "snip_links_total",
    "snip_build_info", "snip_probe_success",
}
HISTOGRAMS = {
    "snip_http_request_duration_seconds", "snip_db_query_duration_seconds",
    "snip_redis_duration_seconds", "snip_probe_duration_seconds",
}
CONTRACT = COUNTERS | GAUGES | {f"{h}{suffix}" for h in HISTOGRAMS
                                for suffix in ("_bucket", "_count", "_sum")}
SEVERITIES = {"page", "ticket"}


# --- promtool ---------------------------------------------------------------------------------

def promtool() -> str:
    return required_binary("promtool", "apt-get install prometheus")


def run_promtool(*args: str | Path) -> None:
    command = [promtool(), *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


def test_rule_files_pass_promtool_check() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    run_promtool("check", "rules", *RULE_FILES)


def test_prometheus_config_passes_promtool_check() -> None:
    run_promtool("check", "config", CONFIG)


@pytest.mark.timeout(600)
def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES, "no promtool tests in deploy/prometheus/tests"
    run_promtool("test", "rules", *TEST_FILES)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana's variables replaced by values)."""
    values = {"$__rate_interval": "5m", "$job": "snip", "$instance": ".*"}
    rules = []
    for n, expr in enumerate(dashboard_exprs()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{n}:check", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", path)


# --- rules, their tests and runbooks -----------------------------------------------------------

def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in load(path)["groups"]:
        yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules(ALERTS) if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = OPERATIONS.read_text()
    assert "\n## Alerts and runbooks\n" in text, "docs/operations.md lacks '## Alerts and runbooks'"
    section = text.split("\n## Alerts and runbooks\n", 1)[1].split("\n## ", 1)[0]
    return {github_anchor(line[4:]) for line in section.splitlines() if line.startswith("### ")}


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    anchors = runbook_anchors()
    problems = []
    assert alerts(), "no alerts in alerts.yml"
    for rule in alerts():
        name = rule["alert"]
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} is not one of {SEVERITIES}")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        url = str(annotations.get("runbook_url", ""))
        base, _, anchor = url.partition("#")
        if not base.endswith("/docs/operations.md"):
            problems.append(f"{name}: runbook_url {url!r} does not point into docs/operations.md")
        if anchor != github_anchor(name):
            problems.append(f"{name}: runbook_url anchor {anchor!r} is not #{github_anchor(name)}")
        if anchor not in anchors:
            problems.append(f"{name}: docs/operations.md has no '### {name}' under "
                            f"'## Alerts and runbooks' (anchor #{anchor})")
    assert not problems, "\n".join(problems)


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert not names - firing, f"no promtool test expects these alerts to fire: {names - firing}"
    assert not names - silent, f"no promtool test expects these alerts to stay silent: {names - silent}"
    assert not (firing | silent) - names, f"tests name unknown alerts: {(firing | silent) - names}"


def test_promtool_tests_evaluate_recording_rules_before_alerts() -> None:
    """promtool evaluates rule groups in a random order unless group_eval_order lists them all;
    an alert must see the ratios recorded at the same step."""
    groups = [(group["name"], any("record" in rule for rule in group["rules"]))
              for path in RULE_FILES for group in load(path)["groups"]]
    for path in TEST_FILES:
        order = load(path).get("group_eval_order") or []
        assert sorted(order) == sorted(name for name, _ in groups), (
            f"{path.name}: group_eval_order must list every rule group: {[n for n, _ in groups]}")
        recording = [order.index(name) for name, records in groups if records]
        alerting = [order.index(name) for name, records in groups if not records]
        assert max(recording) < min(alerting), f"{path.name}: recording groups must come first"


def test_recording_rules_follow_the_naming_convention() -> None:
    for name in recorded_names():
        assert re.fullmatch(r"[a-z_]+:snip_[a-z0-9_]+:[a-z0-9_]+", name), (
            f"{name} is not level:metric:operations")


# --- metric names ---------------------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    """Names in a PromQL expression that look like snip metrics but are not in `known`.

    String literals (label values, regexes) are removed first, so `job="snip-probe"` or a
    route is never taken for a metric.
    """
    names = {name for name in NAME.findall(STRING.sub('""', expr)) if "snip_" in name}
    return names - known


def test_rules_use_only_contract_metrics() -> None:
    known = CONTRACT | recorded_names()
    problems = [f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"
                for path in RULE_FILES for rule in rules(path)
                if (unknown := unknown_metrics(rule["expr"], known))]
    assert not problems, "rules use metrics outside the contract:\n" + "\n".join(problems)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    exprs = [target["expr"] for panel in panels(dashboard()["panels"])
             for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            text = query["query"] if isinstance(query, dict) else query
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", text))
    return exprs


def test_dashboard_is_valid_grafana_json() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_uses_only_contract_metrics_and_recorded_series() -> None:
    known = CONTRACT | recorded_names()
    problems = [f"{expr}: {sorted(unknown)}" for expr in dashboard_exprs()
                if (unknown := unknown_metrics(expr, known))]
    assert not problems, "dashboard queries use unknown metrics:\n" + "\n".join(problems)


def test_dashboard_covers_every_contract_metric() -> None:
    used = {name for expr in dashboard_exprs() for name in NAME.findall(STRING.sub('""', expr))}
    families = {name.removesuffix(suffix) for name in used
                for suffix in ("_bucket", "_count", "_sum") if name.endswith(suffix)} | used
    missing = (COUNTERS | GAUGES | HISTOGRAMS) - families
    assert not missing, f"no dashboard panel shows {sorted(missing)}"


def test_unknown_metrics_ignores_label_values_and_finds_typos() -> None:
    known = CONTRACT | {"job:snip_redirect_errors:ratio_rate5m"}
    assert unknown_metrics('sum by (route) (rate(snip_http_requests_total{job="snip-probe", '
                           'route=~"/\\\\{code\\\\}"}[5m])) / job:snip_redirect_errors:ratio_rate5m',
                           known) == set()
    assert unknown_metrics("rate(snip_http_request_total[5m])", known) == {"snip_http_request_total"}


def test_the_contract_is_what_snip_and_the_prober_register() -> None:
    """A rename in the code must show up here, not as an alert that silently never fires."""
    from snip.adapters.metrics import SnipMetrics

    registered = {name: family.kind for name, family in SnipMetrics().registry.families.items()}
    probe = {"snip_probe_runs_total": "counter", "snip_probe_success": "gauge",
             "snip_probe_duration_seconds": "histogram"}
    exposed = registered | probe
    assert {n for n, k in exposed.items() if k == "counter"} == COUNTERS
    assert {n for n, k in exposed.items() if k == "gauge"} == GAUGES
    assert {n for n, k in exposed.items() if k == "histogram"} == HISTOGRAMS
