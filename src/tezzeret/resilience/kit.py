"""The resilience parts wired together, as the forge uses them.

Owns: building the breakers, conservative mode, TTL memory manager and resource monitor from one
`Settings` and one clock; the wiring between them (monitor samples feed conservative mode; entering
or leaving conservative mode scales every TTL cache's budget by `cache_budget_factor`); one
`health()` view; and one `run()` for the background loops. It must never schedule, run or refuse
work itself: the forge reads `conservative.effective()` and the breakers for that.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tezzeret.config import Settings
from tezzeret.resilience.breaker import BreakerRegistry
from tezzeret.resilience.clock import Clock, MonotonicClock
from tezzeret.resilience.conservative import ConservativeModeController, ModeEvent
from tezzeret.resilience.monitor import ResourceMonitor
from tezzeret.resilience.ttl import TTLMemoryManager


@dataclass
class Resilience:
    settings: Settings
    clock: Clock
    breakers: BreakerRegistry
    conservative: ConservativeModeController
    memory: TTLMemoryManager
    monitor: ResourceMonitor
    # Seconds between load samples; 10 s gives 30 samples per 5-minute GPU window (upstream §10).
    sample_interval_s: float = 10.0
    _applied_factor: float = field(default=1.0, init=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        clock: Clock | None = None,
        *,
        monitor: ResourceMonitor | None = None,
        sample_interval_s: float = 10.0,
    ) -> Resilience:
        clock = clock or MonotonicClock()
        breakers = BreakerRegistry.from_settings(settings, clock)
        conservative = ConservativeModeController(settings, breakers, clock)
        kit = cls(
            settings=settings,
            clock=clock,
            breakers=breakers,
            conservative=conservative,
            memory=TTLMemoryManager(settings, clock),
            monitor=monitor or ResourceMonitor(clock),
            sample_interval_s=sample_interval_s,
        )
        conservative.add_listener(kit._on_mode_event)
        return kit

    def _on_mode_event(self, event: ModeEvent) -> None:
        if event.kind == "trigger":
            return
        factor = self.conservative.effective().cache_budget_factor
        if factor != self._applied_factor:
            self._applied_factor = factor
            self.memory.apply_budget_factor(factor)

    def health(self) -> dict[str, Any]:
        """Breakers, conservative mode, caches and the latest load reading, JSON-ready."""
        latest = self.monitor.window.latest
        return {
            "breakers": self.breakers.snapshot(),
            "conservative_mode": self.conservative.snapshot(),
            "caches": self.memory.stats(),
            "load": None if latest is None else {
                "cpu_percent": latest.cpu_percent,
                "memory_percent": latest.memory_percent,
                "rss_gb": round(latest.rss_gb, 4),
                # None means no GPU could be read, not an idle GPU.
                "gpu_utilization_percent": latest.gpu_utilization_percent,
                "gpu_memory_percent": latest.gpu_memory_percent,
            },
            "gpu_unavailable_reason": self.monitor.gpu.unavailable_reason,
        }

    async def run(self) -> None:
        """Sample load into conservative mode and sweep the caches, until cancelled.

        Runs two periodic loops on `clock`: with a `ManualClock` build it with `autoadvance=False`
        and drive it with `advance`.
        """
        await asyncio.gather(
            self.monitor.run(self.sample_interval_s, self.conservative.observe),
            self.memory.run(),
        )

    def close(self) -> None:
        self.monitor.close()
