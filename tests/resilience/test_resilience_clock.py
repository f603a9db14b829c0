"""Clocks: the manual clock's two sleep modes, including several periodic tasks on one driver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from settings import settings_for

from tezzeret.resilience import Clock, ManualClock, MonotonicClock, ResourceMonitor, TTLCache, TTLMemoryManager
from tezzeret.resilience.monitor import GpuProbe


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(MonotonicClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    real = MonotonicClock()
    assert real.monotonic() <= real.monotonic()


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=5.0)
    assert clock.monotonic() == 5.0
    assert clock.advance(2.5) == 7.5
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


async def test_autoadvance_sleep_moves_time() -> None:
    clock = ManualClock(start=0.0)
    await clock.sleep(300)
    assert clock.monotonic() == 300.0


async def test_driven_sleepers_wake_in_deadline_order() -> None:
    clock = ManualClock(start=0.0, autoadvance=False)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 30), ("a", 10), ("b", 20))]
    while clock.sleepers < 3:
        await asyncio.sleep(0)
    clock.advance(15)
    await asyncio.sleep(0)
    assert woke == [("a", 15.0)]
    clock.advance(100)
    await asyncio.gather(*tasks)
    assert [n for n, _ in woke] == ["a", "b", "c"]
    assert clock.sleepers == 0


async def test_cancelled_sleeper_leaves_no_trace() -> None:
    clock = ManualClock(autoadvance=False)
    task = asyncio.create_task(clock.sleep(10))
    while clock.sleepers < 1:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0


class NoGpu(GpuProbe):
    def __init__(self) -> None:
        self.unavailable_reason = "no GPU in this test"


async def test_several_periodic_tasks_on_one_driven_clock(tmp_path: Path) -> None:
    """The TTL sweeper (every 300 s) and the monitor (every 10 s) run together for an hour."""
    clock = ManualClock(start=0.0, autoadvance=False)
    s = settings_for(tmp_path, memory_management={"cleanup_interval_seconds": 300})
    mgr = TTLMemoryManager(s, clock)
    c: TTLCache[int, int] = mgr.create("compilation_cache")
    c.put(1, 1)
    mon = ResourceMonitor(clock, gpu=NoGpu())
    samples: list[float] = []
    tasks = [
        asyncio.create_task(mgr.run()),
        asyncio.create_task(mon.run(10.0, lambda _s: samples.append(clock.monotonic()))),
    ]
    for _ in range(360):
        # Let every task finish its period's work (the monitor reads in a thread) and sleep again.
        while clock.sleepers < 2:
            await asyncio.sleep(0.001)
        if clock.monotonic() == 1790.0:
            assert len(c) == 1, "sweeps at 300 … 1500 s found nothing expired"
        if clock.monotonic() == 1800.0:
            assert len(c) == 0, "the sweep at 1800 s expired the entry written at 0 s"
        clock.advance(10)
    while clock.sleepers < 2:
        await asyncio.sleep(0.001)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert clock.monotonic() == 3600.0
    assert len(samples) == 361 and samples[:3] == [0.0, 10.0, 20.0]
    assert len(c) == 0
    assert c.expired_total == 1
