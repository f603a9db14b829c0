"""The wired kit: conservative mode halves and restores cache budgets, health is JSON-ready, and
`run` feeds real monitor readings into conservative mode on a driven clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from settings import settings_for

from tezzeret.resilience import GpuProbe, ManualClock, Resilience, ResourceMonitor, TTLCache


class HotGpu(GpuProbe):
    """A GPU pinned at 90% utilisation and 50% memory (injected reading)."""

    def __init__(self) -> None:
        self.unavailable_reason = None

    def read(self) -> tuple[float | None, float | None]:
        return 90.0, 50.0

    def close(self) -> None:
        pass


def test_conservative_mode_scales_cache_budgets(tmp_path: Path) -> None:
    clock = ManualClock()
    kit = Resilience.from_settings(
        settings_for(tmp_path, memory_management={"max_entries_per_cache": 1000}), clock
    )
    try:
        jobs: TTLCache[int, int] = kit.memory.create("jobs")
        for i in range(1000):
            jobs.put(i, i)
        for _ in range(3):
            kit.breakers["compilation_timeout"].record_failure("STANDARD over 250000 ms")
        assert kit.conservative.active
        assert jobs.max_entries == 500 and len(jobs) == 500
        late: TTLCache[int, int] = kit.memory.create("artifacts")
        assert late.max_entries == 500, "a cache registered during conservative mode gets the reduced budget"
        clock.advance(31)
        for _ in range(3):
            kit.breakers["compilation_timeout"].record_success()
        kit.conservative.tick()
        clock.advance(300)
        kit.conservative.tick()
        assert not kit.conservative.active
        assert jobs.max_entries == 1000 and late.max_entries == 1000
        health = kit.health()
        json.dumps(health)
        assert health["breakers"]["compilation_timeout"]["state"] == "CLOSED"
        assert health["conservative_mode"]["active"] is False
        assert health["caches"]["jobs"]["entries"] == 500
    finally:
        kit.close()


async def test_run_feeds_real_readings_into_conservative_mode(tmp_path: Path) -> None:
    clock = ManualClock(autoadvance=False)
    s = settings_for(tmp_path)
    kit = Resilience.from_settings(s, clock, monitor=ResourceMonitor(clock, gpu=HotGpu()))
    task = asyncio.create_task(kit.run())
    try:
        for _ in range(40):  # 400 simulated seconds at one sample per 10 s
            while clock.sleepers < 2:
                await asyncio.sleep(0.001)
            clock.advance(10)
        while clock.sleepers < 2:
            await asyncio.sleep(0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        kit.close()
    assert kit.conservative.active
    assert "gpu_utilization_sustained" in kit.conservative.reasons
    health = kit.health()
    assert health["load"]["gpu_utilization_percent"] == 90.0
    assert health["load"]["rss_gb"] > 0
