"""Prometheus metrics, named exactly as in the seed (`tezzeret_*`).

Owns: every metric object, registered once on one registry, so `/metrics` shows the lot. Stages
import the metric they update from here; this module must never import a stage. This and `config`
are the only module-level mutable state in Tezzeret, by design.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

COMPILATION_DURATION_MS = Histogram(
    "tezzeret_compilation_duration_ms",
    "Compilation time by strategy, status and conservative mode.",
    ["strategy", "status", "conservative_mode"],
    buckets=(100, 500, 1000, 5000, 10000, 30000, 65000, 120000, 250000, 500000, 960000),
    registry=REGISTRY,
)
CIRCUIT_BREAKER_STATE = Gauge(
    "tezzeret_circuit_breaker_state",
    "1 for the state each breaker is in, 0 for the others.",
    ["circuit_name", "state"],
    registry=REGISTRY,
)
CIRCUIT_BREAKER_FAILURES = Counter(
    "tezzeret_circuit_breaker_failures",
    "Failures recorded by each breaker.",
    ["circuit_name"],
    registry=REGISTRY,
)
CIRCUIT_BREAKER_VIOLATIONS = Counter(
    "tezzeret_circuit_breaker_violations",
    "check_condition violations (the asserts that breakers replace).",
    ["circuit_name"],
    registry=REGISTRY,
)
CONSERVATIVE_MODE_ACTIVE = Gauge(
    "tezzeret_conservative_mode_active", "1 while conservative mode is on.", registry=REGISTRY
)
CONSERVATIVE_MODE_TRIGGERS = Counter(
    "tezzeret_conservative_mode_triggers",
    "Reasons conservative mode was entered or kept.",
    ["trigger_reason"],
    registry=REGISTRY,
)
WAL_TRANSACTIONS = Counter(
    "tezzeret_wal_transactions", "WAL transactions by final status.", ["status"], registry=REGISTRY
)
WAL_RECOVERY = Counter(
    "tezzeret_wal_recovery", "WAL recoveries by outcome.", ["outcome"], registry=REGISTRY
)
WAL_FSYNC_DURATION_MS = Histogram(
    "tezzeret_wal_fsync_duration_ms",
    "Duration of one WAL durability barrier.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000),
    registry=REGISTRY,
)
WAL_RECOVERY_DURATION_MS = Histogram(
    "tezzeret_wal_recovery_duration_ms",
    "Duration of WAL recovery at start-up.",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 12000, 30000),
    registry=REGISTRY,
)
MEMORY_TTL_CLEANUP = Counter(
    "tezzeret_memory_ttl_cleanup",
    "Entries removed by TTL or size-cap cleanup.",
    ["cache_type"],
    registry=REGISTRY,
)
MEMORY_CACHE_ENTRIES = Gauge(
    "tezzeret_memory_cache_entries", "Entries held per cache.", ["cache_type"], registry=REGISTRY
)
MEMORY_GC_DURATION_MS = Histogram(
    "tezzeret_memory_gc_duration_ms",
    "Duration of one cleanup pass.",
    buckets=(0.1, 1, 5, 10, 50, 100, 500, 1000),
    registry=REGISTRY,
)
MEMORY_USAGE_GB = Gauge(
    "tezzeret_memory_usage_gb", "Resident memory of the service process.", registry=REGISTRY
)
GPU_UTILIZATION_PERCENT = Gauge(
    "tezzeret_gpu_utilization_percent",
    "GPU utilisation from NVML; NaN when no GPU is present.",
    registry=REGISTRY,
)
CONCURRENT_COMPILATIONS = Gauge(
    "tezzeret_concurrent_compilations", "Compile jobs running now.", registry=REGISTRY
)
CACHE_HIT_RATE = Gauge(
    "tezzeret_cache_hit_rate", "Hit rate of each cache tier (L1, L2, L3).", ["tier"], registry=REGISTRY
)
CACHE_LOOKUPS = Counter(
    "tezzeret_cache_lookups", "Cache lookups by tier and result.", ["tier", "result"], registry=REGISTRY
)
COMPILE_NODES = Gauge(
    "tezzeret_compile_nodes", "Compile nodes of a remote executor by state (ready, warming, drained, lost).",
    ["state"], registry=REGISTRY,
)
NODE_JOBS_IN_FLIGHT = Gauge(
    "tezzeret_node_jobs_in_flight", "Compile jobs running on each compile node.", ["node"], registry=REGISTRY
)
NODE_WARM_WORKERS = Gauge(
    "tezzeret_node_warm_workers", "Warm sandbox workers on each compile node.", ["node"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge("tezzeret_queue_depth", "Jobs waiting to compile.", registry=REGISTRY)
JOBS = Counter(
    "tezzeret_jobs",
    "Ended jobs by outcome, the tier asked for and the tier served (lower after a fallback).",
    ["outcome", "strategy_requested", "strategy_served"],
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "tezzeret_queue_wait_seconds",
    "Time from a job's admission to its start, by priority.",
    ["priority"],
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)
JOBS_RESUBMITTED = Counter(
    "tezzeret_jobs_resubmitted",
    "Jobs run again after their compile node or actor was lost mid-job (Ray backend), by reason.",
    ["reason"],
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "tezzeret_fallbacks",
    "Tiers that failed or missed their budget and fell to the next tier down, by reason.",
    ["strategy_from", "strategy_to", "reason"],
    registry=REGISTRY,
)
PAYBACK_SKIPS = Counter(
    "tezzeret_payback_tier_skips",
    "Tiers a job skipped because their predicted payback (training time saved minus compile time) was negative.",
    ["strategy"],
    registry=REGISTRY,
)
PAYBACK_EXPLORED = Counter(
    "tezzeret_payback_tier_explorations",
    "Tiers built although predicted not to pay back, so the history keeps measuring them (payback.explore_every).",
    ["strategy"],
    registry=REGISTRY,
)
COMPILE_PREDICTION_RATIO = Histogram(
    "tezzeret_compile_time_prediction_ratio",
    "Measured / predicted compile seconds of each compiled job whose prediction came from history.",
    ["strategy"],
    buckets=(0.25, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0),
    registry=REGISTRY,
)
SERVED_SPEEDUP = Histogram(
    "tezzeret_served_speedup",
    "Training-step speed-up vs eager of each stored artifact's served path (1.0 = eager served).",
    ["strategy"],
    buckets=(0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)
SANDBOX_WORKERS = Gauge(
    "tezzeret_sandbox_workers", "Compile workers by state (alive, busy).", ["state"], registry=REGISTRY
)
SANDBOX_KILLS = Counter(
    "tezzeret_sandbox_kills", "Jobs ended by the sandbox, by outcome (timeout, oom, crash, violation, node_lost).",
    ["outcome"], registry=REGISTRY,
)
EMERGENCY_DURATION_MS = Histogram(
    "tezzeret_emergency_duration_ms",
    "Time from an emergency request's acceptance to its artifact (or failure).",
    buckets=(50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000),
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "tezzeret_outbox_pending", "Events recorded durably and not yet acknowledged by the bus.", registry=REGISTRY
)
BUS_BACKLOG = Gauge(
    "tezzeret_bus_backlog", "Messages waiting in the bus's own buffer (Redis away).", registry=REGISTRY
)
STORE_ARTIFACTS = Gauge(
    "tezzeret_store_artifacts", "Artifacts in the store by kernel status.", ["status"], registry=REGISTRY
)
STORE_BYTES = Gauge("tezzeret_store_bytes", "Bytes of artifact blobs in the store.", registry=REGISTRY)
STORE_SCRUB_FINDINGS = Counter(
    "tezzeret_store_scrub_findings",
    "Blobs found damaged or missing, by where they were found (serve, scrub, lookup).",
    ["found_by"],
    registry=REGISTRY,
)
STORE_SCRUBS = Counter("tezzeret_store_scrubs", "Completed scrubs of the whole store.", registry=REGISTRY)
STORE_CORRUPT_ARTIFACTS = Gauge(
    "tezzeret_store_corrupt_artifacts", "Artifacts marked corrupt and not yet rebuilt.", registry=REGISTRY
)
DISK_FREE_BYTES = Gauge(
    "tezzeret_disk_free_bytes", "Free bytes on the state directory's filesystem.", registry=REGISTRY
)
WAL_UNACKNOWLEDGED_LOSSES = Gauge(
    "tezzeret_wal_unacknowledged_losses",
    "Transactions WAL recovery lost that no operator has acknowledged yet.",
    registry=REGISTRY,
)
AUDIT_WRITE_FAILURES = Counter(
    "tezzeret_audit_write_failures", "Audit records that could not be written at once.", registry=REGISTRY
)
AUDIT_SPOOLED = Gauge(
    "tezzeret_audit_spooled", "Audit records held in memory until the audit log can be written.", registry=REGISTRY
)
BLUEPRINTS_QUARANTINED = Gauge(
    "tezzeret_blueprints_quarantined",
    "Blueprints no automatic path resubmits, after too many failures of their own making.",
    registry=REGISTRY,
)
HTTP_REJECTED = Counter(
    "tezzeret_http_rejected",
    "HTTP requests refused before reaching the forge, by reason (rate_limited, slow_client, too_large, ...).",
    ["reason"],
    registry=REGISTRY,
)
BUS_EVENTS = Counter(
    "tezzeret_bus_events", "Bus messages by topic and result.", ["topic", "result"], registry=REGISTRY
)
EMERGENCY_ACK_MS = Histogram(
    "tezzeret_emergency_ack_ms",
    "Time from an emergency request's XADD to its acknowledgement.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
    registry=REGISTRY,
)


def render() -> bytes:
    """The text exposition of every metric, for `/metrics`."""
    return generate_latest(REGISTRY)
