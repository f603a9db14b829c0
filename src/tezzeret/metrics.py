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
JOBS = Counter("tezzeret_jobs", "Ended jobs by outcome.", ["outcome"], registry=REGISTRY)
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
