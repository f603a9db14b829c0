"""Stage: resilience: circuit breakers, conservative mode, TTL memory management, resource monitor.

A library the forge uses (ARCHITECTURE.md decision 7). Owns degrading instead of crashing and
never growing without bound; it must never import the forge, the API, or any compile stage.
"""

from tezzeret.resilience.breaker import (
    BREAKER_NAMES,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    StateChange,
    Violation,
)
from tezzeret.resilience.clock import Clock, ManualClock, MonotonicClock
from tezzeret.resilience.conservative import (
    ConservativeModeController,
    EffectiveLimits,
    ModeEvent,
    TriggerReason,
)
from tezzeret.resilience.errors import (
    CircuitOpenError,
    ResilienceConfigError,
    ResilienceError,
    UnknownBreakerError,
    UnknownTriggerError,
)
from tezzeret.resilience.kit import Resilience
from tezzeret.resilience.monitor import GpuProbe, LoadSample, LoadWindow, ResourceMonitor
from tezzeret.resilience.ttl import TTLCache, TTLMemoryManager

__all__ = [
    "BREAKER_NAMES",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConservativeModeController",
    "EffectiveLimits",
    "GpuProbe",
    "LoadSample",
    "LoadWindow",
    "ManualClock",
    "ModeEvent",
    "MonotonicClock",
    "Resilience",
    "ResilienceConfigError",
    "ResilienceError",
    "ResourceMonitor",
    "StateChange",
    "TTLCache",
    "TTLMemoryManager",
    "TriggerReason",
    "UnknownBreakerError",
    "UnknownTriggerError",
    "Violation",
]
