"""What the compile workers' share of the GPU means for the `gpu_utilization` and `gpu_memory`
breakers.

Owns: the share the workers may take (`GpuShareLimits`: the design's 25% GPU limit,
`compilation.gpu_utilization_limit`, for SM time and memory alike, and `resources.max_gpu_memory_gb`
for memory), and `feed_gpu_breakers`, which records one load sample against them. The sample's GPU
fields are what `GpuProbe` read for the workers' own processes, never the whole device: a training
job using 90% of the GPU is what the GPU is for, and counting it would keep conservative mode on
for as long as training runs. Must never read NVML or schedule anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from tezzeret.config import Settings
from tezzeret.resilience.breaker import BreakerRegistry
from tezzeret.resilience.monitor import LoadSample


@dataclass(frozen=True)
class GpuShareLimits:
    """The most of one device the compile workers may use together, in percent of it."""

    utilization_percent: float
    memory_percent: float

    @classmethod
    def from_settings(cls, settings: Settings, total_gb: float | None) -> GpuShareLimits:
        """`gpu_utilization_limit` for both, memory lowered to `max_gpu_memory_gb` of a
        `total_gb` device (unknown size: the fraction alone)."""
        share = settings.compilation.gpu_utilization_limit * 100.0
        memory = share
        if total_gb:
            memory = min(memory, 100.0 * settings.resources.max_gpu_memory_gb / total_gb)
        return cls(utilization_percent=share, memory_percent=memory)


def feed_gpu_breakers(breakers: BreakerRegistry, sample: LoadSample, limits: GpuShareLimits) -> None:
    """Record the workers' GPU share of one sample against the breakers. Utilisation: a failure
    above the limit, a success under it. Memory: a failure above the limit only; its successes are
    the compile jobs that finished without running out of memory (a success every sample would
    reset the count of out-of-memory jobs). An unavailable reading records nothing."""
    util = sample.gpu_utilization_percent
    if util is not None:
        if util > limits.utilization_percent:
            breakers["gpu_utilization"].record_failure(
                f"compile workers use {util:.0f}% of the GPU > {limits.utilization_percent:.0f}%"
            )
        else:
            breakers["gpu_utilization"].record_success()
    memory = sample.gpu_memory_percent
    if memory is not None and memory > limits.memory_percent:
        breakers["gpu_memory"].record_failure(
            f"compile workers hold {memory:.1f}% of GPU memory > {limits.memory_percent:.1f}%"
        )
