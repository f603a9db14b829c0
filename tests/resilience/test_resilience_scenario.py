"""A two-hour scenario on one simulated clock: the monitor samples scripted GPU readings (off the
event loop) into conservative mode, a forge-like step runs a job through the `store` breaker and
reads its limits from `effective()`, the store fails and recovers, and the TTL sweeper runs.

One driver steps the clock, so every step is deterministic; the periodic loops running together
on a driven clock are covered in the clock and kit tests."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from settings import settings_for

from tezzeret.config import Strategy
from tezzeret.resilience import (
    BreakerRegistry,
    CircuitOpenError,
    ConservativeModeController,
    GpuProbe,
    ManualClock,
    ResourceMonitor,
    TTLCache,
    TTLMemoryManager,
)


class TimelineGpu(GpuProbe):
    """GPU readings as a function of simulated time."""

    def __init__(self, clock: ManualClock, start: float) -> None:
        self._clock = clock
        self._start = start
        self.unavailable_reason = None

    def read(self) -> tuple[float | None, float | None]:
        t = self._clock.monotonic() - self._start
        util = 45.0 if 600 <= t < 1500 else 5.0
        mem = 88.0 if 3000 <= t < 3300 else 30.0
        return util, mem

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Step:
    t: float
    active: bool
    concurrency: int
    tier: Strategy
    reasons: tuple[str, ...]
    store: str


async def test_two_hour_scenario(tmp_path: Path) -> None:
    clock = ManualClock()
    start = clock.monotonic()
    s = settings_for(tmp_path, sandbox={"training_reserved_cores": 0})  # the seed's 2 stands
    breakers = BreakerRegistry.from_settings(s, clock)
    ctl = ConservativeModeController(s, breakers, clock)
    mon = ResourceMonitor(clock, gpu=TimelineGpu(clock, start))
    mem = TTLMemoryManager(s, clock)
    results: TTLCache[str, str] = mem.create("compilation_cache")
    timeline: list[Step] = []
    refused = 0

    def t() -> float:
        return clock.monotonic() - start

    async def store_write(job: int) -> str:
        await asyncio.sleep(0)
        if 1900 <= t() < 2100:
            raise OSError("store: disk full")
        return f"artifact-{job}"

    next_sweep = 300.0
    for job in range(1, 721):
        clock.advance(10)
        sample = mon.record(await asyncio.to_thread(mon.read))
        # Host memory is scripted too, so the scenario does not depend on this machine's RAM.
        ctl.observe(dataclasses.replace(sample, memory_percent=50.0))
        limits = ctl.effective()
        try:
            results.put(f"job-{job}", await breakers["store"].call_async(store_write, job))
        except CircuitOpenError:
            refused += 1
        except OSError:
            pass
        timeline.append(Step(t(), limits.conservative, limits.max_concurrent_jobs,
                             limits.downgrade(Strategy.STANDARD), limits.reasons,
                             breakers["store"].state.value))
        if t() >= next_sweep:
            await mem.sweep_async()
            next_sweep += 300
    mon.close()

    def at(sec: float) -> Step:
        return min(timeline, key=lambda st: abs(st.t - sec))

    # Normal at first.
    assert not at(500).active and at(500).concurrency == 2 and at(500).tier is Strategy.STANDARD
    # GPU above 20% from 600 s: conservative once sustained for 5 minutes, not before.
    assert not at(850).active
    assert at(950).active and at(950).reasons == ("gpu_utilization_sustained",)
    assert at(950).concurrency == 1 and at(950).tier is Strategy.FAST
    # GPU calm from 1500 s: exits 5 minutes later.
    assert at(1750).active
    assert not at(1850).active
    # Store fails from 1900 s: three failures open the breaker; calls are refused, not made.
    assert at(1910).store == "CLOSED" and not at(1910).active
    assert at(1950).store in ("OPEN", "HALF_OPEN") and at(1950).active
    assert at(1950).reasons == ("circuit_breaker_open",)
    assert refused > 0
    # Store recovers at 2100 s: probes close the breaker, then the 5-minute quiet period.
    assert at(2200).store == "CLOSED" and at(2200).active
    assert at(2400).active
    assert not at(2550).active
    # GPU memory above 80% at 3000-3300 s: concurrency 1 at once; exit 5 minutes after it clears.
    assert at(3050).active and at(3050).reasons == ("gpu_memory_pressure",) and at(3050).concurrency == 1
    assert at(3550).active
    assert not at(3700).active
    # Normal for the rest; exactly three episodes, no flapping.
    assert not any(st.active for st in timeline if st.t > 3700)
    episodes = sum(1 for a, b in zip(timeline, timeline[1:]) if b.active and not a.active)
    assert episodes == 3
    assert [e.kind for e in ctl.history if e.kind != "trigger"] == ["enter", "exit"] * 3
    # The result cache stayed within its TTL: 1800 s at one write per 10 s (+ one sweep period).
    assert 0 < len(results) <= (1800 + 300) // 10 + 1
