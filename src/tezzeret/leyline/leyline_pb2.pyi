from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]

class CompilationStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[CompilationStrategy]
    STRATEGY_EMERGENCY: _ClassVar[CompilationStrategy]
    STRATEGY_FAST: _ClassVar[CompilationStrategy]
    STRATEGY_STANDARD: _ClassVar[CompilationStrategy]
    STRATEGY_AGGRESSIVE: _ClassVar[CompilationStrategy]

class CompilationPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[CompilationPriority]
    PRIORITY_EMERGENCY: _ClassVar[CompilationPriority]
    PRIORITY_STRATEGIC: _ClassVar[CompilationPriority]
    PRIORITY_NORMAL: _ClassVar[CompilationPriority]
    PRIORITY_EXPERIMENTAL: _ClassVar[CompilationPriority]
    PRIORITY_BACKGROUND: _ClassVar[CompilationPriority]

class KarnTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[KarnTier]
    TIER_SAFE: _ClassVar[KarnTier]
    TIER_EXPERIMENTAL: _ClassVar[KarnTier]
    TIER_HIGH_RISK: _ClassVar[KarnTier]
    TIER_ADVERSARIAL: _ClassVar[KarnTier]

class BlueprintLifecycle(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLUEPRINT_UNSPECIFIED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_GENERATED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_SUBMITTED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_COMPILING: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_COMPILED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_VALIDATING: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_VALIDATED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_ACTIVE: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_DEPRECATED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_ARCHIVED: _ClassVar[BlueprintLifecycle]
    BLUEPRINT_INVALID: _ClassVar[BlueprintLifecycle]

class KernelStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KERNEL_UNSPECIFIED: _ClassVar[KernelStatus]
    KERNEL_PENDING_BENCHMARKING: _ClassVar[KernelStatus]
    KERNEL_BENCHMARKING: _ClassVar[KernelStatus]
    KERNEL_VALIDATED: _ClassVar[KernelStatus]
    KERNEL_REJECTED: _ClassVar[KernelStatus]
    KERNEL_ACTIVE: _ClassVar[KernelStatus]
    KERNEL_QUARANTINED: _ClassVar[KernelStatus]
    KERNEL_RETIRED: _ClassVar[KernelStatus]

class JobOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[JobOutcome]
    OUTCOME_SUCCESS: _ClassVar[JobOutcome]
    OUTCOME_REJECTED: _ClassVar[JobOutcome]
    OUTCOME_TIMEOUT: _ClassVar[JobOutcome]
    OUTCOME_OUT_OF_MEMORY: _ClassVar[JobOutcome]
    OUTCOME_CRASH: _ClassVar[JobOutcome]
    OUTCOME_SANDBOX_VIOLATION: _ClassVar[JobOutcome]
    OUTCOME_INTERNAL_ERROR: _ClassVar[JobOutcome]
    OUTCOME_FROM_CACHE: _ClassVar[JobOutcome]
    OUTCOME_NODE_LOST: _ClassVar[JobOutcome]

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNSPECIFIED: _ClassVar[HealthStatus]
    HEALTH_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_UNHEALTHY: _ClassVar[HealthStatus]
    HEALTH_CRITICAL: _ClassVar[HealthStatus]

class CircuitBreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_UNKNOWN: _ClassVar[CircuitBreakerState]
    BREAKER_CLOSED: _ClassVar[CircuitBreakerState]
    BREAKER_OPEN: _ClassVar[CircuitBreakerState]
    BREAKER_HALF_OPEN: _ClassVar[CircuitBreakerState]

class JobEvent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_UNSPECIFIED: _ClassVar[JobEvent]
    JOB_ENQUEUED: _ClassVar[JobEvent]
    JOB_STARTED: _ClassVar[JobEvent]
    JOB_FINISHED: _ClassVar[JobEvent]
    JOB_FAILED: _ClassVar[JobEvent]
    JOB_PUBLISHED: _ClassVar[JobEvent]
    JOB_OUTBOX: _ClassVar[JobEvent]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DTYPE_FLOAT64: DType
DTYPE_INT64: DType
DTYPE_INT32: DType
DTYPE_BOOL: DType
STRATEGY_UNSPECIFIED: CompilationStrategy
STRATEGY_EMERGENCY: CompilationStrategy
STRATEGY_FAST: CompilationStrategy
STRATEGY_STANDARD: CompilationStrategy
STRATEGY_AGGRESSIVE: CompilationStrategy
PRIORITY_UNSPECIFIED: CompilationPriority
PRIORITY_EMERGENCY: CompilationPriority
PRIORITY_STRATEGIC: CompilationPriority
PRIORITY_NORMAL: CompilationPriority
PRIORITY_EXPERIMENTAL: CompilationPriority
PRIORITY_BACKGROUND: CompilationPriority
TIER_UNSPECIFIED: KarnTier
TIER_SAFE: KarnTier
TIER_EXPERIMENTAL: KarnTier
TIER_HIGH_RISK: KarnTier
TIER_ADVERSARIAL: KarnTier
BLUEPRINT_UNSPECIFIED: BlueprintLifecycle
BLUEPRINT_GENERATED: BlueprintLifecycle
BLUEPRINT_SUBMITTED: BlueprintLifecycle
BLUEPRINT_COMPILING: BlueprintLifecycle
BLUEPRINT_COMPILED: BlueprintLifecycle
BLUEPRINT_VALIDATING: BlueprintLifecycle
BLUEPRINT_VALIDATED: BlueprintLifecycle
BLUEPRINT_ACTIVE: BlueprintLifecycle
BLUEPRINT_DEPRECATED: BlueprintLifecycle
BLUEPRINT_ARCHIVED: BlueprintLifecycle
BLUEPRINT_INVALID: BlueprintLifecycle
KERNEL_UNSPECIFIED: KernelStatus
KERNEL_PENDING_BENCHMARKING: KernelStatus
KERNEL_BENCHMARKING: KernelStatus
KERNEL_VALIDATED: KernelStatus
KERNEL_REJECTED: KernelStatus
KERNEL_ACTIVE: KernelStatus
KERNEL_QUARANTINED: KernelStatus
KERNEL_RETIRED: KernelStatus
OUTCOME_UNSPECIFIED: JobOutcome
OUTCOME_SUCCESS: JobOutcome
OUTCOME_REJECTED: JobOutcome
OUTCOME_TIMEOUT: JobOutcome
OUTCOME_OUT_OF_MEMORY: JobOutcome
OUTCOME_CRASH: JobOutcome
OUTCOME_SANDBOX_VIOLATION: JobOutcome
OUTCOME_INTERNAL_ERROR: JobOutcome
OUTCOME_FROM_CACHE: JobOutcome
OUTCOME_NODE_LOST: JobOutcome
HEALTH_UNSPECIFIED: HealthStatus
HEALTH_HEALTHY: HealthStatus
HEALTH_DEGRADED: HealthStatus
HEALTH_UNHEALTHY: HealthStatus
HEALTH_CRITICAL: HealthStatus
BREAKER_UNKNOWN: CircuitBreakerState
BREAKER_CLOSED: CircuitBreakerState
BREAKER_OPEN: CircuitBreakerState
BREAKER_HALF_OPEN: CircuitBreakerState
JOB_EVENT_UNSPECIFIED: JobEvent
JOB_ENQUEUED: JobEvent
JOB_STARTED: JobEvent
JOB_FINISHED: JobEvent
JOB_FAILED: JobEvent
JOB_PUBLISHED: JobEvent
JOB_OUTBOX: JobEvent

class KeyValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Dim(_message.Message):
    __slots__ = ("size", "symbol", "min", "max")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    size: int
    symbol: str
    min: int
    max: int
    def __init__(self, size: _Optional[int] = ..., symbol: _Optional[str] = ..., min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DType
    dims: _containers.RepeatedCompositeFieldContainer[Dim]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., dims: _Optional[_Iterable[_Union[Dim, _Mapping]]] = ...) -> None: ...

class IntList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Attr(_message.Message):
    __slots__ = ("key", "i", "f", "s", "b", "ints", "floats", "strings")
    KEY_FIELD_NUMBER: _ClassVar[int]
    I_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    INTS_FIELD_NUMBER: _ClassVar[int]
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    key: str
    i: int
    f: float
    s: str
    b: bool
    ints: IntList
    floats: FloatList
    strings: StringList
    def __init__(self, key: _Optional[str] = ..., i: _Optional[int] = ..., f: _Optional[float] = ..., s: _Optional[str] = ..., b: _Optional[bool] = ..., ints: _Optional[_Union[IntList, _Mapping]] = ..., floats: _Optional[_Union[FloatList, _Mapping]] = ..., strings: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "op", "inputs", "attrs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    name: str
    op: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    attrs: _containers.RepeatedCompositeFieldContainer[Attr]
    def __init__(self, name: _Optional[str] = ..., op: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., attrs: _Optional[_Iterable[_Union[Attr, _Mapping]]] = ...) -> None: ...

class BlueprintMetadata(_message.Message):
    __slots__ = ("blueprint_id", "name", "category", "tier", "risk", "quarantine_only", "approval_required", "value", "tamiyo_interest", "init_seed", "description", "extra")
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_ONLY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TAMIYO_INTEREST_FIELD_NUMBER: _ClassVar[int]
    INIT_SEED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    blueprint_id: str
    name: str
    category: str
    tier: KarnTier
    risk: float
    quarantine_only: bool
    approval_required: bool
    value: float
    tamiyo_interest: float
    init_seed: int
    description: str
    extra: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, blueprint_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., tier: _Optional[_Union[KarnTier, str]] = ..., risk: _Optional[float] = ..., quarantine_only: _Optional[bool] = ..., approval_required: _Optional[bool] = ..., value: _Optional[float] = ..., tamiyo_interest: _Optional[float] = ..., init_seed: _Optional[int] = ..., description: _Optional[str] = ..., extra: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class BlueprintIR(_message.Message):
    __slots__ = ("schema_version", "inputs", "nodes", "outputs", "metadata")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    metadata: BlueprintMetadata
    def __init__(self, schema_version: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., outputs: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[BlueprintMetadata, _Mapping]] = ...) -> None: ...

class CompilationOptions(_message.Message):
    __slots__ = ("target_hardware", "memory_budget_mb", "requesting_subsystem", "risk_level", "batch_sizes", "training")
    TARGET_HARDWARE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_MB_FIELD_NUMBER: _ClassVar[int]
    REQUESTING_SUBSYSTEM_FIELD_NUMBER: _ClassVar[int]
    RISK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    target_hardware: str
    memory_budget_mb: int
    requesting_subsystem: str
    risk_level: float
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    training: bool
    def __init__(self, target_hardware: _Optional[str] = ..., memory_budget_mb: _Optional[int] = ..., requesting_subsystem: _Optional[str] = ..., risk_level: _Optional[float] = ..., batch_sizes: _Optional[_Iterable[int]] = ..., training: _Optional[bool] = ...) -> None: ...

class CompilationRequest(_message.Message):
    __slots__ = ("schema_version", "request_id", "blueprint", "blueprint_id", "strategy", "priority", "timeout_ms", "options", "requested_by", "issued_at_ns")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    blueprint: BlueprintIR
    blueprint_id: str
    strategy: CompilationStrategy
    priority: CompilationPriority
    timeout_ms: int
    options: CompilationOptions
    requested_by: str
    issued_at_ns: int
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., blueprint: _Optional[_Union[BlueprintIR, _Mapping]] = ..., blueprint_id: _Optional[str] = ..., strategy: _Optional[_Union[CompilationStrategy, str]] = ..., priority: _Optional[_Union[CompilationPriority, str]] = ..., timeout_ms: _Optional[int] = ..., options: _Optional[_Union[CompilationOptions, _Mapping]] = ..., requested_by: _Optional[str] = ..., issued_at_ns: _Optional[int] = ...) -> None: ...

class CompilationResult(_message.Message):
    __slots__ = ("schema_version", "request_id", "job_id", "success", "outcome", "artifact_id", "artifact_ref", "payload_sha256", "blueprint_digest", "strategy_used", "compilation_time_ms", "peak_rss_bytes", "from_cache", "conservative_mode", "conservative_mode_triggered", "warning", "error", "error_code", "wal_transaction_id", "exit_status", "signal", "stderr_tail", "strategy_requested", "fallback_reason")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_REF_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_USED_FIELD_NUMBER: _ClassVar[int]
    COMPILATION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_MODE_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_MODE_TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    WAL_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    job_id: str
    success: bool
    outcome: JobOutcome
    artifact_id: str
    artifact_ref: str
    payload_sha256: str
    blueprint_digest: str
    strategy_used: CompilationStrategy
    compilation_time_ms: float
    peak_rss_bytes: int
    from_cache: bool
    conservative_mode: bool
    conservative_mode_triggered: bool
    warning: str
    error: str
    error_code: str
    wal_transaction_id: str
    exit_status: int
    signal: str
    stderr_tail: str
    strategy_requested: CompilationStrategy
    fallback_reason: str
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., job_id: _Optional[str] = ..., success: _Optional[bool] = ..., outcome: _Optional[_Union[JobOutcome, str]] = ..., artifact_id: _Optional[str] = ..., artifact_ref: _Optional[str] = ..., payload_sha256: _Optional[str] = ..., blueprint_digest: _Optional[str] = ..., strategy_used: _Optional[_Union[CompilationStrategy, str]] = ..., compilation_time_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., from_cache: _Optional[bool] = ..., conservative_mode: _Optional[bool] = ..., conservative_mode_triggered: _Optional[bool] = ..., warning: _Optional[str] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., wal_transaction_id: _Optional[str] = ..., exit_status: _Optional[int] = ..., signal: _Optional[str] = ..., stderr_tail: _Optional[str] = ..., strategy_requested: _Optional[_Union[CompilationStrategy, str]] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class ConcreteTensor(_message.Message):
    __slots__ = ("shape", "dtype", "batch_dims")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DIMS_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    batch_dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., batch_dims: _Optional[_Iterable[int]] = ...) -> None: ...

class ArtifactEntry(_message.Message):
    __slots__ = ("key", "inputs", "grad_enabled", "verified", "max_abs_error", "max_rel_error", "speedup_fwd", "speedup_train", "serve_compiled", "drop_reason", "dynamic_batch", "batch_min", "batch_max", "verified_batches", "notes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    GRAD_ENABLED_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FWD_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_TRAIN_FIELD_NUMBER: _ClassVar[int]
    SERVE_COMPILED_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_MIN_FIELD_NUMBER: _ClassVar[int]
    BATCH_MAX_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    key: str
    inputs: _containers.RepeatedCompositeFieldContainer[ConcreteTensor]
    grad_enabled: bool
    verified: bool
    max_abs_error: float
    max_rel_error: float
    speedup_fwd: float
    speedup_train: float
    serve_compiled: bool
    drop_reason: str
    dynamic_batch: bool
    batch_min: int
    batch_max: int
    verified_batches: _containers.RepeatedScalarFieldContainer[int]
    notes: str
    def __init__(self, key: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ConcreteTensor, _Mapping]]] = ..., grad_enabled: _Optional[bool] = ..., verified: _Optional[bool] = ..., max_abs_error: _Optional[float] = ..., max_rel_error: _Optional[float] = ..., speedup_fwd: _Optional[float] = ..., speedup_train: _Optional[float] = ..., serve_compiled: _Optional[bool] = ..., drop_reason: _Optional[str] = ..., dynamic_batch: _Optional[bool] = ..., batch_min: _Optional[int] = ..., batch_max: _Optional[int] = ..., verified_batches: _Optional[_Iterable[int]] = ..., notes: _Optional[str] = ...) -> None: ...

class CompileStats(_message.Message):
    __slots__ = ("compile_ms", "peak_rss_bytes", "max_parity_error", "speedup_fwd", "speedup_train", "dropped_entries")
    COMPILE_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARITY_ERROR_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FWD_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_TRAIN_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    compile_ms: float
    peak_rss_bytes: int
    max_parity_error: float
    speedup_fwd: float
    speedup_train: float
    dropped_entries: _containers.RepeatedCompositeFieldContainer[ArtifactEntry]
    def __init__(self, compile_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., max_parity_error: _Optional[float] = ..., speedup_fwd: _Optional[float] = ..., speedup_train: _Optional[float] = ..., dropped_entries: _Optional[_Iterable[_Union[ArtifactEntry, _Mapping]]] = ...) -> None: ...

class PayloadRef(_message.Message):
    __slots__ = ("name", "format", "offset", "size", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    offset: int
    size: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class TargetSpec(_message.Message):
    __slots__ = ("device", "arch", "isa", "compute_capability", "cuda_version", "driver_version", "torch_build", "device_name")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    ISA_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TORCH_BUILD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    device: str
    arch: str
    isa: str
    compute_capability: str
    cuda_version: str
    driver_version: str
    torch_build: str
    device_name: str
    def __init__(self, device: _Optional[str] = ..., arch: _Optional[str] = ..., isa: _Optional[str] = ..., compute_capability: _Optional[str] = ..., cuda_version: _Optional[str] = ..., driver_version: _Optional[str] = ..., torch_build: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class CompiledKernelArtifact(_message.Message):
    __slots__ = ("schema_version", "artifact_id", "blueprint_digest", "blueprint", "strategy", "target", "toolchain_hash", "torch_version", "python_version", "entries", "guard_digest", "payload_sha256", "payload_size", "stats", "created_at_ns", "tier_settings", "applied_passes", "payloads", "status", "num_threads", "target_spec", "compile_code_version", "blueprint_code_version", "strategy_requested", "fallback_reason")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_HASH_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    GUARD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    TIER_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PASSES_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NUM_THREADS_FIELD_NUMBER: _ClassVar[int]
    TARGET_SPEC_FIELD_NUMBER: _ClassVar[int]
    COMPILE_CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    artifact_id: str
    blueprint_digest: str
    blueprint: BlueprintIR
    strategy: CompilationStrategy
    target: str
    toolchain_hash: str
    torch_version: str
    python_version: str
    entries: _containers.RepeatedCompositeFieldContainer[ArtifactEntry]
    guard_digest: str
    payload_sha256: str
    payload_size: int
    stats: CompileStats
    created_at_ns: int
    tier_settings: str
    applied_passes: _containers.RepeatedScalarFieldContainer[str]
    payloads: _containers.RepeatedCompositeFieldContainer[PayloadRef]
    status: KernelStatus
    num_threads: int
    target_spec: TargetSpec
    compile_code_version: str
    blueprint_code_version: str
    strategy_requested: CompilationStrategy
    fallback_reason: str
    def __init__(self, schema_version: _Optional[int] = ..., artifact_id: _Optional[str] = ..., blueprint_digest: _Optional[str] = ..., blueprint: _Optional[_Union[BlueprintIR, _Mapping]] = ..., strategy: _Optional[_Union[CompilationStrategy, str]] = ..., target: _Optional[str] = ..., toolchain_hash: _Optional[str] = ..., torch_version: _Optional[str] = ..., python_version: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[ArtifactEntry, _Mapping]]] = ..., guard_digest: _Optional[str] = ..., payload_sha256: _Optional[str] = ..., payload_size: _Optional[int] = ..., stats: _Optional[_Union[CompileStats, _Mapping]] = ..., created_at_ns: _Optional[int] = ..., tier_settings: _Optional[str] = ..., applied_passes: _Optional[_Iterable[str]] = ..., payloads: _Optional[_Iterable[_Union[PayloadRef, _Mapping]]] = ..., status: _Optional[_Union[KernelStatus, str]] = ..., num_threads: _Optional[int] = ..., target_spec: _Optional[_Union[TargetSpec, _Mapping]] = ..., compile_code_version: _Optional[str] = ..., blueprint_code_version: _Optional[str] = ..., strategy_requested: _Optional[_Union[CompilationStrategy, str]] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class EmergencyCompile(_message.Message):
    __slots__ = ("schema_version", "request_id", "blueprint_id", "blueprint", "requested_by", "reason", "deadline_ms", "target_hardware", "training_run_id", "issued_at_ns", "nonce", "batch_sizes")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    TARGET_HARDWARE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    blueprint_id: str
    blueprint: BlueprintIR
    requested_by: str
    reason: str
    deadline_ms: int
    target_hardware: str
    training_run_id: str
    issued_at_ns: int
    nonce: str
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., blueprint: _Optional[_Union[BlueprintIR, _Mapping]] = ..., requested_by: _Optional[str] = ..., reason: _Optional[str] = ..., deadline_ms: _Optional[int] = ..., target_hardware: _Optional[str] = ..., training_run_id: _Optional[str] = ..., issued_at_ns: _Optional[int] = ..., nonce: _Optional[str] = ..., batch_sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class EmergencyAck(_message.Message):
    __slots__ = ("schema_version", "request_id", "accepted", "reason", "queue_position", "estimate_ms", "acked_at_ns")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_MS_FIELD_NUMBER: _ClassVar[int]
    ACKED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    accepted: bool
    reason: str
    queue_position: int
    estimate_ms: int
    acked_at_ns: int
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., queue_position: _Optional[int] = ..., estimate_ms: _Optional[int] = ..., acked_at_ns: _Optional[int] = ...) -> None: ...

class CompilationComplete(_message.Message):
    __slots__ = ("schema_version", "request_id", "blueprint_id", "artifact_id", "strategy", "status", "compilation_time_ms", "peak_memory_mb", "toolchain_version", "artifact_ref", "sha256", "guard_digest", "conservative_mode", "error", "from_cache", "target", "strategy_requested", "fallback_reason", "event_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPILATION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_REF_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    GUARD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_MODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    blueprint_id: str
    artifact_id: str
    strategy: CompilationStrategy
    status: JobOutcome
    compilation_time_ms: float
    peak_memory_mb: float
    toolchain_version: str
    artifact_ref: str
    sha256: str
    guard_digest: str
    conservative_mode: bool
    error: str
    from_cache: bool
    target: str
    strategy_requested: CompilationStrategy
    fallback_reason: str
    event_id: str
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., artifact_id: _Optional[str] = ..., strategy: _Optional[_Union[CompilationStrategy, str]] = ..., status: _Optional[_Union[JobOutcome, str]] = ..., compilation_time_ms: _Optional[float] = ..., peak_memory_mb: _Optional[float] = ..., toolchain_version: _Optional[str] = ..., artifact_ref: _Optional[str] = ..., sha256: _Optional[str] = ..., guard_digest: _Optional[str] = ..., conservative_mode: _Optional[bool] = ..., error: _Optional[str] = ..., from_cache: _Optional[bool] = ..., target: _Optional[str] = ..., strategy_requested: _Optional[_Union[CompilationStrategy, str]] = ..., fallback_reason: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class KernelCatalogUpdate(_message.Message):
    __slots__ = ("schema_version", "blueprint_id", "artifact_id", "artifact_ref", "checksum", "guard_digest", "compile_ms", "prewarm_ms", "strategy", "target", "status", "event_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_REF_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    GUARD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    COMPILE_MS_FIELD_NUMBER: _ClassVar[int]
    PREWARM_MS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    blueprint_id: str
    artifact_id: str
    artifact_ref: str
    checksum: str
    guard_digest: str
    compile_ms: float
    prewarm_ms: float
    strategy: CompilationStrategy
    target: str
    status: KernelStatus
    event_id: str
    def __init__(self, schema_version: _Optional[int] = ..., blueprint_id: _Optional[str] = ..., artifact_id: _Optional[str] = ..., artifact_ref: _Optional[str] = ..., checksum: _Optional[str] = ..., guard_digest: _Optional[str] = ..., compile_ms: _Optional[float] = ..., prewarm_ms: _Optional[float] = ..., strategy: _Optional[_Union[CompilationStrategy, str]] = ..., target: _Optional[str] = ..., status: _Optional[_Union[KernelStatus, str]] = ..., event_id: _Optional[str] = ...) -> None: ...

class KernelCharacterized(_message.Message):
    __slots__ = ("schema_version", "artifact_id", "blueprint_id", "status", "reason", "latency_p50_ms", "latency_p95_ms")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    artifact_id: str
    blueprint_id: str
    status: KernelStatus
    reason: str
    latency_p50_ms: float
    latency_p95_ms: float
    def __init__(self, schema_version: _Optional[int] = ..., artifact_id: _Optional[str] = ..., blueprint_id: _Optional[str] = ..., status: _Optional[_Union[KernelStatus, str]] = ..., reason: _Optional[str] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ...) -> None: ...

class BlueprintSubmitted(_message.Message):
    __slots__ = ("schema_version", "blueprint_id", "blueprint", "priority")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    blueprint_id: str
    blueprint: BlueprintIR
    priority: CompilationPriority
    def __init__(self, schema_version: _Optional[int] = ..., blueprint_id: _Optional[str] = ..., blueprint: _Optional[_Union[BlueprintIR, _Mapping]] = ..., priority: _Optional[_Union[CompilationPriority, str]] = ...) -> None: ...

class BusEnvelope(_message.Message):
    __slots__ = ("schema_version", "message_type", "payload", "message_id", "key_id", "signature", "issued_at_ns", "attributes")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    message_type: str
    payload: bytes
    message_id: str
    key_id: str
    signature: bytes
    issued_at_ns: int
    attributes: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, schema_version: _Optional[int] = ..., message_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., message_id: _Optional[str] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., issued_at_ns: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class ExecutionContext(_message.Message):
    __slots__ = ("schema_version", "model_hash", "toolchain_version", "training_run_id", "hardware_profile", "operation")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    model_hash: str
    toolchain_version: str
    training_run_id: str
    hardware_profile: str
    operation: str
    def __init__(self, schema_version: _Optional[int] = ..., model_hash: _Optional[str] = ..., toolchain_version: _Optional[str] = ..., training_run_id: _Optional[str] = ..., hardware_profile: _Optional[str] = ..., operation: _Optional[str] = ...) -> None: ...

class OutboxEvent(_message.Message):
    __slots__ = ("topic", "message_id", "type", "payload")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    topic: str
    message_id: str
    type: str
    payload: bytes
    def __init__(self, topic: _Optional[str] = ..., message_id: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class JobRecord(_message.Message):
    __slots__ = ("schema_version", "event", "job_id", "artifact_id", "priority", "sequence", "request", "result", "at_ns", "source", "strategy_reason", "attempts", "outbox")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    AT_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    event: JobEvent
    job_id: str
    artifact_id: str
    priority: CompilationPriority
    sequence: int
    request: bytes
    result: CompilationResult
    at_ns: int
    source: str
    strategy_reason: str
    attempts: int
    outbox: _containers.RepeatedCompositeFieldContainer[OutboxEvent]
    def __init__(self, schema_version: _Optional[int] = ..., event: _Optional[_Union[JobEvent, str]] = ..., job_id: _Optional[str] = ..., artifact_id: _Optional[str] = ..., priority: _Optional[_Union[CompilationPriority, str]] = ..., sequence: _Optional[int] = ..., request: _Optional[bytes] = ..., result: _Optional[_Union[CompilationResult, _Mapping]] = ..., at_ns: _Optional[int] = ..., source: _Optional[str] = ..., strategy_reason: _Optional[str] = ..., attempts: _Optional[int] = ..., outbox: _Optional[_Iterable[_Union[OutboxEvent, _Mapping]]] = ...) -> None: ...

class WorkerJob(_message.Message):
    __slots__ = ("schema_version", "job_id", "task", "blueprint", "strategy", "batch_sizes", "output_dir", "memory_limit_mb", "timeout_ms", "cpu_only", "params", "target")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_MB_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_ONLY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    job_id: str
    task: str
    blueprint: bytes
    strategy: CompilationStrategy
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    output_dir: str
    memory_limit_mb: int
    timeout_ms: int
    cpu_only: bool
    params: _containers.RepeatedCompositeFieldContainer[KeyValue]
    target: str
    def __init__(self, schema_version: _Optional[int] = ..., job_id: _Optional[str] = ..., task: _Optional[str] = ..., blueprint: _Optional[bytes] = ..., strategy: _Optional[_Union[CompilationStrategy, str]] = ..., batch_sizes: _Optional[_Iterable[int]] = ..., output_dir: _Optional[str] = ..., memory_limit_mb: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., cpu_only: _Optional[bool] = ..., params: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., target: _Optional[str] = ...) -> None: ...

class WorkerResult(_message.Message):
    __slots__ = ("schema_version", "job_id", "outcome", "artifact_path", "manifest", "error", "error_code", "compile_ms", "peak_rss_bytes", "details")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_PATH_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    COMPILE_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    job_id: str
    outcome: JobOutcome
    artifact_path: str
    manifest: CompiledKernelArtifact
    error: str
    error_code: str
    compile_ms: float
    peak_rss_bytes: int
    details: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, schema_version: _Optional[int] = ..., job_id: _Optional[str] = ..., outcome: _Optional[_Union[JobOutcome, str]] = ..., artifact_path: _Optional[str] = ..., manifest: _Optional[_Union[CompiledKernelArtifact, _Mapping]] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., compile_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., details: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class ArtifactSignature(_message.Message):
    __slots__ = ("schema_version", "key_id", "algorithm", "signature")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    key_id: str
    algorithm: str
    signature: bytes
    def __init__(self, schema_version: _Optional[int] = ..., key_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...
