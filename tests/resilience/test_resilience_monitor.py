"""Resource monitor: real psutil and NVML readings, the rolling window, and a sampling loop that
never blocks the event loop."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import types

import pytest
from resilience_helpers import metric

from tezzeret.resilience import GpuProbe, LoadSample, LoadWindow, ManualClock, ResilienceConfigError, ResourceMonitor


def s(gpu: float | None = None, mem: float = 40.0) -> LoadSample:
    return LoadSample(cpu_percent=10.0, memory_percent=mem, rss_gb=0.1, gpu_utilization_percent=gpu, gpu_memory_percent=None)


class ScriptedGpu(GpuProbe):
    """A GPU probe that returns injected readings, for driving the monitor without hardware."""

    def __init__(self, readings: list[tuple[float | None, float | None]]) -> None:
        self._readings = list(readings)
        self.unavailable_reason = None
        self.threads: list[int] = []
        self.release = threading.Event()
        self.blocking = False

    def read(self) -> tuple[float | None, float | None]:
        self.threads.append(threading.get_ident())
        if self.blocking:
            # Would deadlock if called on the event loop's thread: the loop sets this event.
            self.release.wait(timeout=30)
        return self._readings.pop(0) if self._readings else (None, None)

    def close(self) -> None:
        pass


def test_real_sample_reads_the_host(clock: ManualClock) -> None:
    mon = ResourceMonitor(clock)
    try:
        sample = mon.sample()
        assert 0.0 <= sample.cpu_percent <= 100.0 * 64
        assert 0.0 < sample.memory_percent <= 100.0
        assert sample.rss_gb > 0.0
        assert metric("tezzeret_memory_usage_gb") == pytest.approx(sample.rss_gb)
        gauge = metric("tezzeret_gpu_utilization_percent")
        if mon.gpu.available:
            assert sample.gpu_utilization_percent is not None and 0.0 <= sample.gpu_utilization_percent <= 100.0
            assert sample.gpu_memory_percent is not None and 0.0 <= sample.gpu_memory_percent <= 100.0
            assert gauge == sample.gpu_utilization_percent
        else:
            # No GPU or driver: unavailable, never a reassuring zero.
            assert mon.gpu.unavailable_reason
            assert sample.gpu_utilization_percent is None and sample.gpu_memory_percent is None
            assert math.isnan(gauge)
        assert mon.window.latest == sample
    finally:
        mon.close()


def test_gpu_probe_with_no_selected_device_is_unavailable() -> None:
    probe = GpuProbe(indices=[10_000])
    try:
        assert not probe.available
        assert probe.read() == (None, None)
    finally:
        probe.close()


def test_window_above_needs_the_whole_duration(clock: ManualClock) -> None:
    w = LoadWindow(clock, window_s=600)
    assert not w.above("gpu_utilization_percent", 20, 300)
    for _ in range(30):  # 0 … 290 s above 20%
        w.add(s(gpu=25))
        clock.advance(10)
    assert not w.above("gpu_utilization_percent", 20, 300)
    w.add(s(gpu=25))  # the 300th second
    assert w.above("gpu_utilization_percent", 20, 300)
    assert not w.above("gpu_utilization_percent", 25, 300), "strictly above"
    assert w.max_over("gpu_utilization_percent", 60) == 25


def test_window_runs_are_broken_by_dips_and_unavailable_readings(clock: ManualClock) -> None:
    w = LoadWindow(clock, window_s=600)
    for i in range(40):
        w.add(s(gpu=None if i == 20 else 50))
        clock.advance(10)
    w.add(s(gpu=50))
    assert not w.above("gpu_utilization_percent", 20, 300)  # the run began at i=21: 200 s
    assert w.above("gpu_utilization_percent", 20, 190)
    assert w.above("memory_percent", 30, 390)


def test_window_forgets_old_samples(clock: ManualClock) -> None:
    w = LoadWindow(clock, window_s=60)
    for _ in range(100):
        w.add(s(gpu=90))
        clock.advance(10)
    assert len(w) <= 7
    assert not w.above("gpu_utilization_percent", 20, 120), "longer than the window can prove"
    clock.advance(3600)
    assert not w.above("gpu_utilization_percent", 20, 10)
    assert len(w) == 0
    with pytest.raises(ResilienceConfigError):
        LoadWindow(clock, window_s=0)


async def test_run_samples_off_the_event_loop(clock: ManualClock) -> None:
    gpu = ScriptedGpu([(10.0, 20.0), (30.0, 40.0), (50.0, 60.0)])
    gpu.blocking = True
    mon = ResourceMonitor(clock, gpu=gpu)
    got: list[LoadSample] = []
    three = asyncio.Event()

    async def on_sample(sample: LoadSample) -> None:
        got.append(sample)
        if len(got) == 3:
            three.set()

    task = asyncio.create_task(mon.run(10.0, on_sample))
    # While a reading is blocked inside the probe, this coroutine still runs; it is what lets
    # the reading finish, so a blocking call on the loop would never get here.
    while not three.is_set():
        await asyncio.sleep(0)
        if gpu.threads and not gpu.release.is_set():
            gpu.release.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [x.gpu_utilization_percent for x in got] == [10.0, 30.0, 50.0]
    assert [x.gpu_memory_percent for x in got] == [20.0, 40.0, 60.0]
    assert threading.get_ident() not in gpu.threads
    assert metric("tezzeret_gpu_utilization_percent") == 50.0
    assert len(mon.window) == 3


async def test_run_survives_a_failing_callback(clock: ManualClock) -> None:
    mon = ResourceMonitor(clock, gpu=ScriptedGpu([]))
    calls: list[LoadSample] = []

    def flaky(sample: LoadSample) -> None:
        calls.append(sample)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")

    task = asyncio.create_task(mon.run(5.0, flaky))
    while len(calls) < 3:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls[0].gpu_utilization_percent is None
    with pytest.raises(ResilienceConfigError):
        await mon.run(0, None)


def _stand_in_nvml(util: list[float | Exception], used: list[float | Exception]) -> types.ModuleType:
    """A stand-in for the NVML bindings with the same call surface, for the aggregation and error
    paths of `GpuProbe` on machines without a GPU (on a GPU machine `test_real_sample_reads_the_host`
    exercises the real library)."""
    mod = types.ModuleType("pynvml")
    total = 80 * 2**30

    def pick(values: list[float | Exception], handle: int) -> float:
        value = values[handle]
        if isinstance(value, Exception):
            raise value
        return value

    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(util)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=pick(util, h))  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=pick(used, h) * total, total=total)  # type: ignore[attr-defined]
    return mod


def test_gpu_probe_reports_the_busiest_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _stand_in_nvml([10.0, 60.0], [0.9, 0.5]))
    probe = GpuProbe()
    assert probe.available
    assert probe.read() == (60.0, pytest.approx(90.0))
    only_first = GpuProbe(indices=[0])
    assert only_first.read() == (10.0, pytest.approx(90.0))


def test_gpu_probe_failed_reads_are_unavailable_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    err = RuntimeError("NVML_ERROR_GPU_IS_LOST")
    monkeypatch.setitem(sys.modules, "pynvml", _stand_in_nvml([err, 30.0], [err, err]))
    probe = GpuProbe()
    assert probe.read() == (30.0, None)
    monkeypatch.setitem(sys.modules, "pynvml", _stand_in_nvml([err], [err]))
    assert GpuProbe().read() == (None, None)
