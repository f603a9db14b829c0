"""Tezzeret's settings: the seed's YAML keys verbatim, the upstream keys (upstream §8.3), and ours.

Owns: the one typed view of configuration every stage reads. Sources, highest priority first:
`TEZZERET_*` environment variables (nested with `__`, e.g. `TEZZERET_COMPILATION__MAX_CONCURRENT_JOBS`),
then the YAML file given with `--config` (the seed's block, rooted at `tezzeret:`), then the embedded
defaults, which run everything on one machine. An unknown key or a bad value fails start-up with the
key's dotted path and the reason. It must never read configuration lazily from elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tezzeret.blueprint.limits import ValidationLimits
from tezzeret.errors import ConfigError
from tezzeret.leyline.strategy import Strategy


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CompilationSettings(Strict):
    max_concurrent_jobs: int = Field(2, ge=1, le=64)
    default_strategy: Strategy = Strategy.STANDARD
    enable_emergency_compilation: bool = True
    enable_caching: bool = True
    gpu_utilization_limit: float = Field(0.25, gt=0.0, le=1.0)
    enable_aggressive_pipeline: bool = True
    # Aging: a waiting job is boosted one priority level per this many seconds (upstream §7.1).
    aging_interval_s: float = Field(300.0, gt=0)
    # Strategy selection (upstream §3.4).
    tamiyo_interest_threshold: float = Field(0.7, ge=0.0, le=1.0)
    idle_recompilation: bool = True
    max_queue_depth: int = Field(10_000, ge=1)
    # Failures a blueprint causes itself (timeouts, out of memory, nothing that compiles or
    # verifies) since its last success before it is quarantined: no automatic path submits it.
    max_blueprint_failures: int = Field(3, ge=1)


class BreakerSettings(Strict):
    enabled: bool | None = None
    failure_threshold: int | None = Field(None, ge=1)
    timeout_ms: int | None = Field(None, ge=1)
    success_threshold: int | None = Field(None, ge=1)


class CircuitBreakerSettings(Strict):
    enabled: bool = True
    failure_threshold: int = Field(3, ge=1)
    timeout_ms: int = Field(30_000, ge=1)
    # Successes in HALF_OPEN that close the breaker (06.1: 3).
    success_threshold: int = Field(3, ge=1)
    gpu_memory: BreakerSettings = BreakerSettings()
    gpu_utilization: BreakerSettings = BreakerSettings()
    compilation_timeout: BreakerSettings = BreakerSettings()
    kernel_validation: BreakerSettings = BreakerSettings()
    store: BreakerSettings = BreakerSettings()
    bus: BreakerSettings = BreakerSettings()

    def for_breaker(self, name: str) -> BreakerSettings:
        """The effective settings of one named breaker: its own keys over the global defaults."""
        own: BreakerSettings = getattr(self, name, BreakerSettings())
        return BreakerSettings(
            enabled=self.enabled if own.enabled is None else own.enabled,
            failure_threshold=own.failure_threshold or self.failure_threshold,
            timeout_ms=own.timeout_ms or self.timeout_ms,
            success_threshold=own.success_threshold or self.success_threshold,
        )


class ConservativeEffects(Strict):
    max_concurrent_jobs: int = Field(1, ge=1)
    gpu_utilization_limit: float = Field(0.15, gt=0.0, le=1.0)
    timeout_extension_factor: float = Field(1.5, ge=1.0)
    disable_aggressive_compilation: bool = True
    disable_idle_recompilation: bool = True
    cache_budget_factor: float = Field(0.5, gt=0.0, le=1.0)


class ConservativeModeSettings(Strict):
    auto_enable: bool = True
    gpu_threshold_percent: float = Field(20, ge=0, le=100)
    threshold_duration_minutes: float = Field(5, ge=0)
    memory_threshold_percent: float = Field(80, ge=0, le=100)
    # Hysteresis: load counts as calm (for exit) only this many points under each entry threshold.
    exit_hysteresis_percent: float = Field(5, ge=0, le=50)
    triggers: list[str] = [
        "circuit_breaker_open",
        "gpu_utilization_above_20_percent_for_5_minutes",
        "memory_usage_above_80_percent",
        "compilation_timeout",
        "torch_crash",
    ]
    settings: ConservativeEffects = ConservativeEffects()


class WalSettings(Strict):
    # Must stay true: the WAL is what makes accepted work survive a crash (kept as a key because
    # the seed's YAML carries it; false is refused at start-up rather than silently ignored).
    enabled: bool = True
    # None: `<state_dir>/wal`.
    path: Path | None = None
    durability_mode: Literal["O_DSYNC", "fsync"] = "O_DSYNC"
    filesystem_type: Literal["ext4", "xfs", "auto"] = "auto"
    checkpoint_interval_compilations: int = Field(10, ge=1)
    max_wal_size_mb: int = Field(1024, ge=1)
    recovery_validation: Literal["strict", "warn"] = "strict"
    # Longest a commit waits for others to share its sync (group commit).
    group_commit_window_us: int = Field(0, ge=0, le=100_000)

    @field_validator("enabled")
    @classmethod
    def _wal_on(cls, value: bool) -> bool:
        if not value:
            raise ValueError("the WAL cannot be turned off: it is what makes accepted work survive a crash")
        return value


class MemoryManagementSettings(Strict):
    ttl_cleanup_enabled: bool = True
    cleanup_interval_seconds: float = Field(300, gt=0)
    cache_ttl_seconds: float = Field(1800, gt=0)
    job_ttl_seconds: float = Field(3600, gt=0)
    artifact_ttl_seconds: float = Field(86400, gt=0)
    max_cache_size_mb: float = Field(4096, gt=0)
    max_entries_per_cache: int = Field(100_000, ge=1)
    # A job still waiting this long ends FAILED (EXPIRED), journaled and audited: the queue is
    # bounded in time as well as in depth, and nothing accepted disappears without a record.
    queue_ttl_seconds: float = Field(86_400, gt=0)


class ProtocolSettings(Strict):
    """The seed's protocol keys. Tezzeret speaks Leyline v2 (proto2, no `map<>`), checks every
    decode→re-encode round trip and refuses forbidden features, always: the keys exist so the
    seed's YAML loads, and any other value is refused at start-up with the reason."""

    version: Literal["v2"] = "v2"
    validate_decode_reencode: bool = True
    forbidden_features_check: bool = True
    containerized_toolchain: bool = False
    toolchain_image: str = ""

    @field_validator("validate_decode_reencode", "forbidden_features_check")
    @classmethod
    def _checks_on(cls, value: bool) -> bool:
        if not value:
            raise ValueError("contract checks cannot be turned off: they are part of validating every message")
        return value

    @field_validator("containerized_toolchain")
    @classmethod
    def _no_container(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "a containerized protoc toolchain is not supported: the contracts are generated at build "
                "time (`make proto`); run the forge itself in a container if you need one"
            )
        return value

    @field_validator("toolchain_image")
    @classmethod
    def _no_image(cls, value: str) -> str:
        if value:
            raise ValueError("only meaningful with containerized_toolchain, which is not supported")
        return value


class TimeoutSettings(Strict):
    emergency_compilation: int = Field(10_000, ge=1)
    fast_compilation: int = Field(65_000, ge=1)
    standard_compilation: int = Field(250_000, ge=1)
    aggressive_compilation: int = Field(960_000, ge=1)
    circuit_breaker_reset: int = Field(30_000, ge=1)
    conservative_mode_timeout: int = Field(300_000, ge=0)

    def for_strategy(self, strategy: Strategy | str) -> int:
        return int(getattr(self, f"{Strategy.parse(strategy).value.lower()}_compilation"))


class PerJobMemoryLimits(Strict):
    emergency: int = Field(2048, ge=64)
    fast: int = Field(4096, ge=64)
    standard: int = Field(8192, ge=64)
    aggressive: int = Field(16384, ge=64)

    def for_strategy(self, strategy: Strategy | str) -> int:
        return int(getattr(self, Strategy.parse(strategy).value.lower()))


class ResourceSettings(Strict):
    # GPU memory compile workers may take, per device (with `compilation.gpu_utilization_limit`,
    # whichever is smaller); CPU cores they may use (caps compile slots); memory all running compile
    # jobs may take together (a job waits until its tier's limit fits under it).
    max_gpu_memory_gb: float = Field(16, gt=0)
    # The GPU (NVML / nvidia-smi index) compile workers use: their CUDA_VISIBLE_DEVICES is pinned to
    # it, so a worker never lands on a training job's other GPUs. None: workers inherit the
    # service's CUDA_VISIBLE_DEVICES. It is also the device a `cuda` build target describes.
    gpu_device: int | None = Field(None, ge=0)
    max_cpu_cores: int = Field(8, ge=1)
    memory_budget_gb: float = Field(16, gt=0)
    per_job_memory_limits: PerJobMemoryLimits = PerJobMemoryLimits()
    # Health is DEGRADED below this much free space on the state dir's filesystem, UNHEALTHY below
    # an eighth of it (the WAL and the store may soon fail to write).
    min_free_disk_mb: float = Field(1024, ge=0)


class SandboxSettings(Strict):
    # Who runs compile jobs: "local" (this host's bubblewrap pool) or "ray" (a bubblewrap pool on
    # each node of a Ray cluster; see `RaySettings` and the README's "Scale-out on Ray").
    backend: Literal["local", "ray"] = "local"
    # auto: bubblewrap when installed, else `unshare --net` where permitted, else a plain subprocess.
    isolation: Literal["auto", "bwrap", "unshare", "subprocess"] = "auto"
    max_jobs_per_worker: int = Field(20, ge=1)
    niceness: int = Field(10, ge=0, le=19)
    worker_threads: int = Field(1, ge=1)
    cpu_affinity: list[int] = []
    cpu_time_factor: float = Field(1.5, ge=1.0)
    max_file_size_mb: int = Field(1024, ge=1)
    max_processes: int = Field(512, ge=8)
    compile_threads: int = Field(1, ge=1)
    grace_period_s: float = Field(30.0, ge=0)
    # When the service runs as root, workers drop to this uid/gid so RLIMIT_NPROC is enforced
    # (the kernel exempts root) and root-owned 0600 files stay unreadable.
    worker_uid: int = Field(61000, ge=1, le=2**31 - 2)
    # SCHED_IDLE for workers: they only get CPU no other runnable task wants. On by default: the
    # first non-negotiable is no training disruption, so a busy host slows compiles, not training.
    sched_idle: bool = True
    # Cores left to training: compile workers never outnumber (cores - this), at least one; 0 lets
    # `max_concurrent_jobs` stand as configured. On a 2-core host that is one worker whatever
    # `max_concurrent_jobs` says (a second worker shares training's core and slowed its step p50
    # by 30% even under SCHED_IDLE; bench/disruption.py).
    training_reserved_cores: int = Field(1, ge=0)
    # While processes outside the sandbox keep at least `contended_threshold_cores` busy (None:
    # half of the cores the workers do not use), the general workers together get at most
    # `contended_cpu_quota` cores (a cgroup CPU cap, in periods of `throttle_period_ms`); 0 turns
    # the cap off. A long period leaves most of training's steps untouched (the p50), a short one
    # spreads the cost over all of them. A job's wall-clock timeout counts only the share of a
    # core it was allowed. Measurements: sandbox/throttle.py.
    contended_cpu_quota: float = Field(0.25, ge=0.0)
    contended_threshold_cores: float | None = Field(None, gt=0.0)
    throttle_period_ms: int = Field(100, ge=1, le=1000)


class RaySettings(Strict):
    """The Ray backend (`sandbox.backend: ray`). Only read when that backend is chosen."""

    # "auto" (a `ray start` cluster this host belongs to), "host:port" (its GCS), or "ray://host:port"
    # (Ray Client, for a forge outside the cluster, e.g. next to KubeRay).
    address: str = "auto"
    # Named actors live here: two forges on one cluster need different namespaces.
    namespace: str = "tezzeret"
    # Artifact target -> the Ray resources a node must offer to compile for it, e.g.
    # {"cpu-x86_64-avx2": {"tezzeret_cpu_x86_64_avx2": 1}, "cuda-sm90": {"GPU": 1,
    # "accelerator_type:H100": 0.001}}. An empty mapping: every compile node offers that target.
    # A job whose target is not listed here waits (see `unplaceable_timeout_s`); a job with no
    # target goes to any compile node.
    targets: dict[str, dict[str, float]] = {}
    # What each compile actor holds on its node: a node hosts actors only if it offers these, so a
    # head started with `--num-cpus=0` compiles nothing. Add a custom resource to opt nodes in.
    actor_resources: dict[str, float] = {"CPU": 1.0}
    actors_per_node: int = Field(1, ge=1, le=16)
    # How long a job waits for a node offering its target before it ends as INTERNAL_ERROR
    # (code SANDBOX_NO_NODE_FOR_TARGET). Jobs waiting for busy nodes wait without limit.
    unplaceable_timeout_s: float = Field(600.0, ge=0)
    # Where a compile actor keeps its pool's state on its node (one subdirectory per actor).
    node_state_dir: Path = Path("/tmp/tezzeret-node")
    # Ray restarts a dead actor (its process crashed, the node is alive) this often, warm again.
    max_restarts: int = Field(5, ge=-1)
    # A node whose actors fail this many jobs in a row (lost, crashed, workers that will not
    # start) takes no new jobs for `drain_s`.
    drain_after_failures: int = Field(3, ge=1)
    drain_s: float = Field(600.0, ge=0)
    # How often the forge reads the cluster's node table and each actor's pool status.
    poll_interval_s: float = Field(2.0, gt=0)
    # A job whose compile node (or actor) is lost mid-job runs again on a live node, this many times
    # at most; then it ends as OUTCOME_NODE_LOST. Never counted against the forge's breakers or the
    # blueprint's own failures: losing a machine is not the blueprint's fault.
    max_node_losses_per_job: int = Field(3, ge=0)
    # `start()` waits this long for the actors on the nodes present at start to warm up.
    start_timeout_s: float = Field(600.0, gt=0)


class PollingSettings(Strict):
    initial_full_scan: bool = True
    # 0 turns periodic refresh off.
    refresh_interval_minutes: float = Field(1.0, ge=0)


class BusKey(Strict):
    key_id: str
    # The secret is read from this environment variable, or given inline (tests, local runs).
    secret_env: str | None = None
    secret: str | None = None
    roles: list[Literal["publisher", "emergency", "admin"]] = ["publisher"]

    def resolve(self) -> bytes:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ConfigError([(f"bus.keys[{self.key_id}].secret_env", f"${self.secret_env} is not set")])
            return value.encode()
        if self.secret:
            return self.secret.encode()
        raise ConfigError([(f"bus.keys[{self.key_id}]", "needs secret_env or secret")])


class BusSettings(Strict):
    stream_prefix: str = "oona."
    consumer_group: str = "tezzeret"
    max_deliveries: int = Field(5, ge=1)
    claim_idle_ms: int = Field(60_000, ge=1)
    maxlen: int = Field(5000, ge=1)
    outbox_limit: int = Field(10_000, ge=1)
    signing_key_id: str = "tezzeret"
    keys: list[BusKey] = [BusKey(key_id="tezzeret", secret="local-development-only", roles=["publisher", "emergency", "admin"])]


class EmergencySettings(Strict):
    stream: str = "tezzeret.emergency"
    reply_stream: str = "tezzeret.emergency.reply"
    consumer_group: str = "tezzeret"
    ack_timeout_ms: int = Field(500, ge=1)
    max_per_min: int = Field(120, ge=1)
    freshness_window_s: float = Field(120, gt=0)
    reserved_worker: bool = True


class ApiToken(Strict):
    name: str
    # SHA-256 (hex) of the bearer token; the token itself is never stored.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: list[Literal["submit", "emergency", "admin"]] = ["submit"]


class ApiSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    tokens: list[ApiToken] = []
    # Whether submitting needs a bearer token with role `submit`. "auto" (the default): whenever
    # `host` is not a loopback address, so a forge reachable from the network never takes
    # anonymous work, while `tezzeret serve` + `tezzeret submit` on one machine need no setup.
    # Set true behind a reverse proxy on the same host (every client then looks local).
    require_token_for_submit: bool | Literal["auto"] = "auto"
    # Submissions per client (a token's name, or the address of an anonymous client): a token
    # bucket refilled at `rate_limit_per_min` that holds at most `rate_limit_burst`; 0 turns the
    # limit off. Refusals answer 429 with Retry-After.
    rate_limit_per_min: int = Field(600, ge=0)
    rate_limit_burst: int = Field(120, ge=1)
    # A client has this long from the first byte of a request to its last (headers and body), and
    # a new connection this long to start one; slower clients are cut off and counted.
    read_timeout_s: float = Field(30.0, gt=0)
    # Processes that parse and statically validate request bodies away from the server's event
    # loop: one for bodies up to 256 KiB, `parse_workers` for larger ones (so a few huge bodies
    # never delay ordinary submissions).
    parse_workers: int = Field(1, ge=1, le=16)
    # None: `<state_dir>/audit.jsonl`.
    audit_log: Path | None = None

    def submit_needs_token(self) -> bool:
        if self.require_token_for_submit != "auto":
            return bool(self.require_token_for_submit)
        return not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (`127.0.0.0/8`, `::1`, `localhost`)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SigningSettings(Strict):
    enabled: bool = True
    # None: `<state_dir>/keys`.
    key_dir: Path | None = None


class CacheSettings(Strict):
    l1_max_entries: int = Field(4096, ge=1)
    # None: `<state_dir>/inductor`.
    inductor_cache_dir: Path | None = None
    remote_inductor_cache: bool = True
    # The Redis of the shared L3 (Inductor's remote caches) when it must not be `redis_url` (the
    # bus's): compile workers hold these credentials, so give them an ACL user limited to the
    # cache's keys. None: `redis_url`.
    l3_redis_url: str | None = None


_LIMITS = ValidationLimits()


class StoreSettings(Strict):
    # Every stored blob is re-hashed at least this often, at idle (0: only `tezzeret store scrub`).
    scrub_interval_s: float = Field(3600, ge=0)


class BlueprintSettings(Strict):
    """Static-validation limits for a BlueprintIR (the SecurityValidator's bounds): the keys of
    `blueprint.ValidationLimits`, bounded here; `limits()` is what validation takes.

    Sizes are checked before parsing; FLOPs and activation memory at the largest declared batch.
    """

    max_json_bytes: int = Field(_LIMITS.max_json_bytes, ge=1024)
    max_proto_bytes: int = Field(_LIMITS.max_proto_bytes, ge=1024)
    max_json_depth: int = Field(_LIMITS.max_json_depth, ge=4, le=1000)
    max_nodes: int = Field(_LIMITS.max_nodes, ge=1)
    max_inputs: int = Field(_LIMITS.max_inputs, ge=1)
    max_outputs: int = Field(_LIMITS.max_outputs, ge=1)
    max_node_inputs: int = Field(_LIMITS.max_node_inputs, ge=1)
    max_attrs_per_node: int = Field(_LIMITS.max_attrs_per_node, ge=1)
    max_list_length: int = Field(_LIMITS.max_list_length, ge=1)
    max_rank: int = Field(_LIMITS.max_rank, ge=1)
    max_dim_size: int = Field(_LIMITS.max_dim_size, ge=1)
    max_parameters: int = Field(_LIMITS.max_parameters, ge=1)
    max_flops: float = Field(_LIMITS.max_flops, gt=0)
    max_activation_mb: float = Field(_LIMITS.max_activation_mb, gt=0)
    max_string_length: int = Field(_LIMITS.max_string_length, ge=8)
    max_description_length: int = Field(_LIMITS.max_description_length, ge=8)

    def limits(self) -> ValidationLimits:
        return ValidationLimits(**self.model_dump())


class PaybackSettings(Strict):
    """The payback predictor (`forge/payback.py`): a tier is skipped when the training time its
    artifact is predicted to save over `expected_steps` steps is less than its predicted compile
    time. Predictions come from the recorded attempts of other blueprints at the same tier on
    the same machine; with fewer than `min_history` of them nothing is skipped."""

    # Skip tiers whose predicted payback is negative (predictions and ETAs are shown either way).
    enabled: bool = True
    # Training steps, all runs together, expected through one artifact (it is compiled once and
    # loaded by every run that uses the blueprint).
    expected_steps: int = Field(1_000_000, ge=1)
    # Recorded attempts at a tier (on this machine) before its prediction may skip it.
    min_history: int = Field(5, ge=2)
    # How many of the most similar recorded blueprints a prediction averages.
    neighbours: int = Field(3, ge=1, le=50)
    # How unlike a recorded blueprint may be and still say what this one's speed-up will be: the
    # predictor's distance (size features in standard deviations of the history, plus the share
    # of ops not in common). With no recorded blueprint this close, the payback is unknown and the
    # tier is built (the compile time is still predicted from the nearest, for the ETA).
    max_distance: float = Field(1.0, gt=0)
    # Of the jobs whose tier would be skipped, every `explore_every`-th is built at its tier anyway,
    # so the history keeps measuring what a skipped tier buys (0: never).
    explore_every: int = Field(10, ge=0)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tezzeret"


class Settings(BaseSettings):
    """All of Tezzeret's configuration. Build it with `load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix="TEZZERET_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    state_dir: Path = Field(default_factory=_default_state_dir)
    redis_url: str | None = None
    compilation: CompilationSettings = CompilationSettings()
    circuit_breakers: CircuitBreakerSettings = CircuitBreakerSettings()
    conservative_mode: ConservativeModeSettings = ConservativeModeSettings()
    wal: WalSettings = WalSettings()
    memory_management: MemoryManagementSettings = MemoryManagementSettings()
    protocol: ProtocolSettings = ProtocolSettings()
    timeouts_ms: TimeoutSettings = TimeoutSettings()
    resources: ResourceSettings = ResourceSettings()
    sandbox: SandboxSettings = SandboxSettings()
    ray: RaySettings = RaySettings()
    polling: PollingSettings = PollingSettings()
    bus: BusSettings = BusSettings()
    emergency: EmergencySettings = EmergencySettings()
    api: ApiSettings = ApiSettings()
    signing: SigningSettings = SigningSettings()
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    blueprint: BlueprintSettings = BlueprintSettings()
    payback: PaybackSettings = PaybackSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML file, which arrives as init arguments.
        return (env_settings, init_settings)

    def compile_slots(self, cores: int | None = None) -> int:
        """Compile jobs that may run at once: `compilation.max_concurrent_jobs`, lowered so the
        workers leave `sandbox.training_reserved_cores` of the host's `cores` to training and use
        no more than `resources.max_cpu_cores` cores."""
        cores = min(cores if cores is not None else (os.cpu_count() or 1), self.resources.max_cpu_cores)
        reserved = self.sandbox.training_reserved_cores
        slots = self.compilation.max_concurrent_jobs if reserved == 0 else max(1, cores - reserved)
        return max(1, min(self.compilation.max_concurrent_jobs, slots, self.resources.max_cpu_cores))

    def contention_threshold(self, cores: int | None = None) -> float:
        """Cores other processes must keep busy before the sandbox's CPU cap engages."""
        if self.sandbox.contended_threshold_cores is not None:
            return self.sandbox.contended_threshold_cores
        cores = cores if cores is not None else (os.cpu_count() or 1)
        return max(0.5, 0.5 * (cores - self.compile_slots(cores)))

    # Derived paths: one place decides where each piece of state lives.
    @property
    def wal_dir(self) -> Path:
        return self.wal.path or self.state_dir / "wal"

    @property
    def key_dir(self) -> Path:
        return self.signing.key_dir or self.state_dir / "keys"

    @property
    def audit_log_path(self) -> Path:
        return self.api.audit_log or self.state_dir / "audit.jsonl"

    @property
    def inductor_cache_dir(self) -> Path:
        return self.cache.inductor_cache_dir or self.state_dir / "inductor"

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "store"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"]) or "(root)"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        out.append((path, reason))
    return out


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the embedded defaults, an optional YAML file, the environment and `overrides`.

    The YAML may be the seed's block (rooted at `tezzeret:`) or the same keys at top level.
    Raises `ConfigError` naming every bad key by its dotted path.
    """
    data: dict[str, Any] = {}
    source = "configuration"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError([("--config", f"{path} does not exist")], source) from None
        except yaml.YAMLError as exc:
            raise ConfigError([("(file)", f"not valid YAML: {exc}")], source) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError([("(root)", "must be a mapping")], source)
        if set(raw) == {"tezzeret"}:
            raw = raw["tezzeret"] or {}
            if not isinstance(raw, dict):
                raise ConfigError([("tezzeret", "must be a mapping")], source)
        data = raw
    data = _deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
