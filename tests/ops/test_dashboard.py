"""The Grafana dashboard: the committed JSON is what the generator prints, it covers every metric the
forge exports, and every panel query parses and returns series on a real Prometheus scraping a real
`tezzeret serve` that has just compiled blueprints."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
import time
from types import ModuleType

import httpx
import pytest
from ops_helpers import OPS, Prometheus, finish, submit
from serverproc import ServerProcess

from tezzeret import metrics

COMMITTED = OPS / "grafana" / "tezzeret.json"
# What Grafana puts in place of its own variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$instance": ".*"}


@functools.cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tezzeret_dashboard", OPS / "grafana" / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def dashboard_queries() -> list[tuple[str, str]]:
    return generator().queries(json.loads(COMMITTED.read_text()))


def as_sent(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_committed_json_is_what_the_generator_prints() -> None:
    assert COMMITTED.read_text() == generator().render(), (
        "ops/grafana/tezzeret.json is stale: run `.venv/bin/python ops/grafana/dashboard.py > ops/grafana/tezzeret.json`"
    )


def test_every_panel_queries_prometheus_and_every_metric_is_shown() -> None:
    doc = json.loads(COMMITTED.read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len(panels) >= 25
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    shown = " ".join(expr for _, expr in dashboard_queries())
    exported = {m.name for m in metrics.REGISTRY.collect()}  # counters without their _total
    missing = sorted(name for name in exported if not re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", shown))
    assert not missing, f"metrics on no panel: {missing}"
    # The variables a query may use are the ones Grafana fills in (and this test substitutes).
    for title, expr in dashboard_queries():
        leftover = re.findall(r"\$\w+", as_sent(expr))
        assert not leftover, f"{title}: unknown variable(s) {leftover}"


def test_every_panel_query_returns_series_on_a_real_prometheus(
    forge: ServerProcess, prometheus: Prometheus
) -> None:
    # Compile while Prometheus scrapes, one job at a time with scrapes in between: a series is born
    # with its first job's count, so only the later jobs show as an increase in rates and quantiles.
    with httpx.Client(base_url=forge.url, timeout=60) as client:
        for name in ("mlp_512", "residual_mlp_256", "swiglu_mlp_512"):
            finish(client, submit(client, [name]))
            time.sleep(2.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = prometheus.query('sum(tezzeret_jobs_total{outcome="SUCCESS"})')
        result = got.get("data", {}).get("result", [])
        if result and float(result[0]["value"][1]) >= 3:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"Prometheus never saw the three jobs: {got}\n{prometheus.log_tail()}")
    time.sleep(2.5)  # a few more scrapes: the counters' last increase is inside every rate window

    failures = []
    for title, expr in dashboard_queries():
        answer = prometheus.query(as_sent(expr))
        if answer.get("status") != "success":
            failures.append(f"{title}: {expr}\n  -> {answer.get('errorType')}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            failures.append(f"{title}: {expr}\n  -> no series")
    assert not failures, "\n".join(failures)

    # Values that must reflect the work just done, not only exist.
    compile_p50 = prometheus.query(as_sent(
        'histogram_quantile(0.5, sum by (le, strategy) (rate(tezzeret_compilation_duration_ms_bucket{status="SUCCESS"}[$__rate_interval])))'
    ))["data"]["result"]
    assert [r["metric"]["strategy"] for r in compile_p50] == ["EMERGENCY"]
    assert float(compile_p50[0]["value"][1]) > 0

    # The alert rules load and evaluate in this Prometheus without errors.
    rules = httpx.get(prometheus.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [r for g in rules for r in g["rules"]]
    assert len(loaded) == 11
    assert all(r["health"] in ("ok", "unknown") for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
