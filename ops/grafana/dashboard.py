"""The forge's Grafana dashboard, as code: `python ops/grafana/dashboard.py > ops/grafana/tezzeret.json`.

Owns: every panel and PromQL query of the dashboard, built with Grafana's own builder library
(`grafana-foundation-sdk`, pinned in the `test` extra), and the JSON committed beside this file.
`tests/ops/test_dashboard.py` checks the committed JSON is what this prints, and runs every query
against a real Prometheus scraping a real `tezzeret serve`. Must never hold a query that returns
nothing while the forge is healthy: a counter that has never fired has no series, so those panels
end in `or on() vector(0)` (the `on()` keeps the zero out when the left side has series).

Metric names are the ones `/metrics` shows: prometheus_client adds `_total` to counters and
`_bucket`/`_sum`/`_count` to histograms.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)

UID = "tezzeret-forge"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every selector carries the instance filter, so one dashboard serves one forge or several.
INSTANCE = 'instance=~"$instance"'
# A labelled counter or histogram that never fired has no series: answer zero instead of nothing.
ZERO = " or on() vector(0)"


def m(name: str, matchers: str = "") -> str:
    """A selector for `name` with the instance filter and any extra `matchers`."""
    inner = ", ".join(x for x in (INSTANCE, matchers) if x)
    return f"{name}{{{inner}}}"


def rate(name: str, matchers: str = "", window: str = "$__rate_interval") -> str:
    return f"rate({m(name, matchers)}[{window}])"


def quantile(q: float, histogram: str, by: str = "", matchers: str = "") -> str:
    labels = ", ".join(x for x in ("le", by) if x)
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket', matchers)}))"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries, stat, state
    width: int = 8
    mappings: dict[str, str] = field(default_factory=dict)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    ("Health at a glance", (
        PanelSpec("Forge up", "1 while Prometheus can scrape the forge's /metrics.",
                  (q(f"up{{{INSTANCE}}}", "{{instance}}"),), kind="stat", width=4,
                  mappings={"0": "DOWN", "1": "UP"}),
        PanelSpec("Conservative mode", "1 while conservative mode caps tiers and concurrency "
                  "(runbook: conservative-mode). It exits by itself once breakers close and load is calm.",
                  (q(f"max({m('tezzeret_conservative_mode_active')})", "active"),), kind="stat", width=4,
                  mappings={"0": "off", "1": "ON"}),
        PanelSpec("WAL losses not acknowledged", "Transactions WAL recovery lost that no operator has "
                  "acknowledged (runbook: wal-losses).",
                  (q(f"sum({m('tezzeret_wal_unacknowledged_losses')})", "lost"),), kind="stat", width=4),
        PanelSpec("Corrupt artifacts", "Artifacts marked corrupt and not yet rebuilt (runbook: store-corruption).",
                  (q(f"sum({m('tezzeret_store_corrupt_artifacts')})", "corrupt"),), kind="stat", width=4),
        PanelSpec("Disk free (state dir)", "Free bytes on the state directory's filesystem (runbook: disk-low).",
                  (q(f"min({m('tezzeret_disk_free_bytes')})", "free"),), unit="bytes", kind="stat", width=4),
        PanelSpec("Quarantined blueprints", "Blueprints no automatic path resubmits after repeated failures "
                  "of their own making.",
                  (q(f"sum({m('tezzeret_blueprints_quarantined')})", "quarantined"),), kind="stat", width=4),
    )),
    ("Queue and jobs", (
        PanelSpec("Queue depth and running compiles", "Jobs waiting to compile, and compile jobs running now.",
                  (q(f"sum({m('tezzeret_queue_depth')})", "queued"),
                   q(f"sum({m('tezzeret_concurrent_compilations')})", "running"))),
        PanelSpec("Queue wait p50 / p95 by priority", "Time from a job's admission to its start "
                  "(alert: TezzeretQueueWaitOverBudget).",
                  (q(quantile(0.5, "tezzeret_queue_wait_seconds", "priority") + ZERO, "p50 {{priority}}"),
                   q(quantile(0.95, "tezzeret_queue_wait_seconds", "priority") + ZERO, "p95 {{priority}}")),
                  unit="s"),
        PanelSpec("Jobs by outcome and tier (asked → served), per minute", "Ended jobs; a served tier "
                  "lower than the one asked for means a fallback.",
                  (q("sum by (outcome, strategy_requested, strategy_served) ("
                     + rate("tezzeret_jobs_total") + ") * 60" + ZERO,
                     "{{outcome}} {{strategy_requested}}→{{strategy_served}}"),)),
        PanelSpec("Fallbacks to a lower tier, per minute", "Tiers that failed or missed their budget and "
                  "fell to the next tier down, by reason.",
                  (q("sum by (strategy_from, strategy_to, reason) (" + rate("tezzeret_fallbacks_total") + ") * 60"
                     + ZERO, "{{strategy_from}}→{{strategy_to}} {{reason}}"),)),
        PanelSpec("Tier asked → served over the range", "Jobs ended in the dashboard's time range, by the "
                  "tier asked for and the tier served.",
                  (q("sum by (strategy_requested, strategy_served) (increase("
                     + m("tezzeret_jobs_total") + "[$__range]))" + ZERO,
                     "{{strategy_requested}}→{{strategy_served}}"),), kind="stat"),
        PanelSpec("HTTP requests refused, per minute", "Requests refused before reaching the forge "
                  "(rate limits, slow clients, bodies too large).",
                  (q("sum by (reason) (" + rate("tezzeret_http_rejected_total") + ") * 60" + ZERO, "{{reason}}"),)),
    )),
    ("Compilation", (
        PanelSpec("Compile time p50 / p95 per tier", "Successful compilations by tier.",
                  (q(quantile(0.5, "tezzeret_compilation_duration_ms", "strategy", 'status="SUCCESS"') + ZERO,
                     "p50 {{strategy}}"),
                   q(quantile(0.95, "tezzeret_compilation_duration_ms", "strategy", 'status="SUCCESS"') + ZERO,
                     "p95 {{strategy}}")), unit="ms"),
        PanelSpec("Compilations by tier and status, per minute", "Every compilation that ended, by tier "
                  "and status.",
                  (q("sum by (strategy, status) (" + rate("tezzeret_compilation_duration_ms_count") + ") * 60"
                     + ZERO, "{{strategy}} {{status}}"),)),
        PanelSpec("Served speed-up vs eager (median)", "Training-step speed-up of each stored artifact's "
                  "served path; 1.0 means eager is served.",
                  (q(quantile(0.5, "tezzeret_served_speedup", "strategy") + ZERO, "{{strategy}}"),), unit="x"),
        PanelSpec("Payback: tiers skipped and prediction accuracy", "Tiers skipped per hour because their "
                  "predicted payback was negative, tiers built anyway to keep measuring them "
                  "(payback.explore_every), and measured / predicted compile time (median; 1.0 is exact).",
                  (q("sum by (strategy) (" + rate("tezzeret_payback_tier_skips_total") + ") * 3600" + ZERO,
                     "skipped {{strategy}}"),
                   q("sum by (strategy) (" + rate("tezzeret_payback_tier_explorations_total") + ") * 3600" + ZERO,
                     "explored {{strategy}}"),
                   q(quantile(0.5, "tezzeret_compile_time_prediction_ratio", "strategy") + ZERO,
                     "measured/predicted {{strategy}}"))),
        PanelSpec("Cache hit rate per level", "Hit rate of L1 (in process), L2 (the store) and L3 "
                  "(Inductor's caches).",
                  (q(f"max by (tier) ({m('tezzeret_cache_hit_rate')})", "{{tier}}"),), unit="percentunit"),
        PanelSpec("Cache lookups by level and result, per minute", "Lookups per cache level.",
                  (q("sum by (tier, result) (" + rate("tezzeret_cache_lookups_total") + ") * 60" + ZERO,
                     "{{tier}} {{result}}"),)),
    )),
    ("Resilience", (
        PanelSpec("Circuit breakers", "Each breaker's state: CLOSED, HALF_OPEN or OPEN "
                  "(runbooks: breaker-open, breaker-not-closed).",
                  (q("max by (circuit_name) (" + m("tezzeret_circuit_breaker_state", 'state="OPEN"') + ") * 2 + "
                     "max by (circuit_name) (" + m("tezzeret_circuit_breaker_state", 'state="HALF_OPEN"') + ")",
                     "{{circuit_name}}"),), kind="state", width=12,
                  mappings={"0": "CLOSED", "1": "HALF_OPEN", "2": "OPEN"}),
        PanelSpec("Breaker failures and violations, per minute", "Failures each breaker recorded, and "
                  "check_condition violations (the asserts breakers replace).",
                  (q("sum by (circuit_name) (" + rate("tezzeret_circuit_breaker_failures_total") + ") * 60" + ZERO,
                     "failures {{circuit_name}}"),
                   q("sum by (circuit_name) (" + rate("tezzeret_circuit_breaker_violations_total") + ") * 60" + ZERO,
                     "violations {{circuit_name}}")), width=6),
        PanelSpec("Conservative mode triggers", "Reasons conservative mode was entered or kept, per minute.",
                  (q(f"max({m('tezzeret_conservative_mode_active')})", "active"),
                   q("sum by (trigger_reason) (" + rate("tezzeret_conservative_mode_triggers_total") + ") * 60"
                     + ZERO, "{{trigger_reason}}")), width=6),
    )),
    ("WAL", (
        PanelSpec("WAL fsync p50 / p99", "Duration of one WAL durability barrier.",
                  (q(quantile(0.5, "tezzeret_wal_fsync_duration_ms"), "p50"),
                   q(quantile(0.99, "tezzeret_wal_fsync_duration_ms"), "p99")), unit="ms"),
        PanelSpec("WAL transactions per second", "Transactions by final status (lost: recovery could not "
                  "complete them; runbook: wal-losses).",
                  (q("sum by (status) (" + rate("tezzeret_wal_transactions_total") + ")" + ZERO, "{{status}}"),),
                  unit="ops"),
        PanelSpec("WAL recovery", "Recoveries at start-up by outcome (over the range), the mean recovery "
                  "time, and losses no operator has acknowledged.",
                  (q("sum by (outcome) (increase(" + m("tezzeret_wal_recovery_total") + "[$__range]))" + ZERO,
                     "recoveries {{outcome}}"),
                   q(f"max({m('tezzeret_wal_recovery_duration_ms_sum')} / "
                     f"clamp_min({m('tezzeret_wal_recovery_duration_ms_count')}, 1))", "mean ms"),
                   q(f"sum({m('tezzeret_wal_unacknowledged_losses')})", "unacknowledged losses")), kind="stat"),
    )),
    ("Sandbox and emergency", (
        PanelSpec("Sandbox workers", "Compile workers alive and busy (alert: TezzeretWorkersNotAlive).",
                  (q(f"sum by (state) ({m('tezzeret_sandbox_workers')})" + ZERO, "{{state}}"),)),
        PanelSpec("Jobs killed by the sandbox, per minute", "Timeouts, out-of-memory kills, crashes, "
                  "violations, lost nodes.",
                  (q("sum by (outcome) (" + rate("tezzeret_sandbox_kills_total") + ") * 60" + ZERO, "{{outcome}}"),)),
        PanelSpec("Compile nodes (Ray backend)", "Nodes by state, and jobs and warm workers per node "
                  "(zero with the local backend).",
                  (q(f"sum by (state) ({m('tezzeret_compile_nodes')})" + ZERO, "nodes {{state}}"),
                   q(f"sum by (node) ({m('tezzeret_node_jobs_in_flight')})" + ZERO, "jobs {{node}}"),
                   q(f"sum by (node) ({m('tezzeret_node_warm_workers')})" + ZERO, "warm {{node}}"))),
        PanelSpec("Jobs run again after a lost node, per minute", "Jobs whose compile node or actor was "
                  "lost mid-job and that ran again on a live node, by reason.",
                  (q("sum by (reason) (" + rate("tezzeret_jobs_resubmitted_total") + ") * 60" + ZERO,
                     "{{reason}}"),)),
        PanelSpec("Emergency latency: ack and artifact", "Acknowledgement p99 (XADD to ack) and request to "
                  "artifact p50/p99 (alerts: TezzeretEmergencyAckSlow, TezzeretEmergencyP99OverBudget).",
                  (q(quantile(0.99, "tezzeret_emergency_ack_ms"), "ack p99"),
                   q(quantile(0.5, "tezzeret_emergency_duration_ms"), "artifact p50"),
                   q(quantile(0.99, "tezzeret_emergency_duration_ms"), "artifact p99")), unit="ms"),
    )),
    ("Bus", (
        PanelSpec("Bus backlog and outbox", "Messages buffered while Redis is away, and events recorded "
                  "durably but not yet acknowledged by the bus (alert: TezzeretOutboxGrowing).",
                  (q(f"sum({m('tezzeret_bus_backlog')})", "bus backlog"),
                   q(f"sum({m('tezzeret_outbox_pending')})", "outbox pending")), width=12),
        PanelSpec("Bus messages by topic and result, per minute", "Published, delivered, failed and "
                  "dead-lettered messages.",
                  (q("sum by (topic, result) (" + rate("tezzeret_bus_events_total") + ") * 60" + ZERO,
                     "{{topic}} {{result}}"),), width=12),
    )),
    ("Store and host", (
        PanelSpec("Store size", "Bytes of artifact blobs, and artifacts by kernel status.",
                  (q(f"sum({m('tezzeret_store_bytes')})", "bytes"),
                   q(f"sum by (status) ({m('tezzeret_store_artifacts')})" + ZERO, "artifacts {{status}}")),
                  width=6),
        PanelSpec("Scrub findings and corrupt artifacts", "Blobs found damaged or missing (over the range), "
                  "completed scrubs, and artifacts corrupt and not yet rebuilt (alert: TezzeretStoreCorruption).",
                  (q("sum by (found_by) (increase(" + m("tezzeret_store_scrub_findings_total") + "[$__range]))"
                     + ZERO, "findings {{found_by}}"),
                   q("sum(increase(" + m("tezzeret_store_scrubs_total") + "[$__range]))", "scrubs"),
                   q(f"sum({m('tezzeret_store_corrupt_artifacts')})", "corrupt")), width=6),
        PanelSpec("Disk free (state dir)", "Free bytes on the state directory's filesystem "
                  "(alert: TezzeretDiskLow).",
                  (q(f"min by (instance) ({m('tezzeret_disk_free_bytes')})", "{{instance}}"),), unit="bytes",
                  width=6),
        PanelSpec("Memory", "Resident memory of the service process, and entries per in-memory cache.",
                  (q(f"max by (instance) ({m('tezzeret_memory_usage_gb')})", "RSS GB {{instance}}"),
                   q(f"sum by (cache_type) ({m('tezzeret_memory_cache_entries')})", "entries {{cache_type}}")),
                  width=6),
        PanelSpec("Memory cleanup", "Entries removed by TTL or size-cap cleanup per minute, and the p99 "
                  "duration of one cleanup pass.",
                  (q("sum by (cache_type) (" + rate("tezzeret_memory_ttl_cleanup_total") + ") * 60" + ZERO,
                     "removed {{cache_type}}"),
                   q(quantile(0.99, "tezzeret_memory_gc_duration_ms"), "pass p99 ms")), width=6),
        PanelSpec("GPU utilisation", "GPU utilisation from NVML (no value on a host without a GPU).",
                  (q(f"max by (instance) ({m('tezzeret_gpu_utilization_percent')})", "{{instance}}"),),
                  unit="percent", width=6),
        PanelSpec("Audit log", "Audit records not written at once (per minute), and records held in memory "
                  "until the log can be written (runbook: audit-failing).",
                  (q("sum(" + rate("tezzeret_audit_write_failures_total") + ") * 60", "write failures"),
                   q(f"sum({m('tezzeret_audit_spooled')})", "spooled")), width=12),
    )),
)


def _mappings(values: dict[str, str]) -> list[ValueMap]:
    return [ValueMap({k: ValueMappingResult(text=v, index=i) for i, (k, v) in enumerate(values.items())})]


def _panel(spec: PanelSpec) -> object:
    builder: object
    if spec.kind == "stat":
        builder = stat.Panel()
    elif spec.kind == "state":
        builder = statetimeline.Panel()
    else:
        builder = timeseries.Panel().fill_opacity(10)
    builder = (
        builder.title(spec.title)  # type: ignore[attr-defined]
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(spec.width)
    )
    if spec.mappings:
        builder = builder.mappings(_mappings(spec.mappings))
    for i, query in enumerate(spec.queries):
        builder = builder.with_target(
            Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        )
    return builder


def build() -> Dashboard:
    dash = (
        Dashboard("Tezzeret forge")
        .uid(UID)
        .description("The compilation forge: queue, tiers, caches, breakers, WAL, sandbox, bus, store, host. "
                     "Runbook: docs/runbook.md; alerts: ops/prometheus/alerts.yml.")
        .tags(["tezzeret", "generated"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("instance")
            .label("Instance")
            .datasource(DATASOURCE)
            .query("label_values(tezzeret_queue_depth, instance)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for title, panels in ROWS:
        dash = dash.with_row(Row(title))
        for spec in panels:
            dash = dash.with_panel(_panel(spec))  # type: ignore[arg-type]
    return dash


def render() -> str:
    """The dashboard JSON exactly as committed in `ops/grafana/tezzeret.json`."""
    return json.dumps(build().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def queries(doc: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target in a dashboard JSON document."""
    out = []
    for panel in doc.get("panels", []):
        for target in panel.get("targets", []) or []:
            if target.get("expr"):
                out.append((panel["title"], target["expr"]))
    return out


if __name__ == "__main__":
    sys.stdout.write(render())
