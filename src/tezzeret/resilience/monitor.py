"""Host load readings: CPU and RAM from psutil, GPU utilisation and memory from NVML.

Owns: `LoadSample` (one reading), `LoadWindow` (a rolling window of timestamped readings that can
answer "above 20% for 5 minutes"), `GpuProbe` (NVML through `nvidia-ml-py`: a whole device, or only
what the compile workers' processes use of it) and `ResourceMonitor`
(samples, exports `tezzeret_gpu_utilization_percent` and `tezzeret_memory_usage_gb`, and runs a
sampling loop). It must never block the event loop (readings are taken in a worker thread), and
must never report a missing GPU as 0%: no GPU, no driver or a failed read is `None`
("unavailable"), and the gauge reads NaN.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psutil

from tezzeret import metrics
from tezzeret.resilience.clock import Clock
from tezzeret.resilience.errors import ResilienceConfigError

log = logging.getLogger(__name__)

LoadField = Literal[
    "cpu_percent", "memory_percent", "rss_gb", "gpu_utilization_percent", "gpu_memory_percent"
]


@dataclass(frozen=True)
class LoadSample:
    """One reading of the host. GPU fields are None when no GPU can be read."""

    cpu_percent: float
    memory_percent: float
    rss_gb: float
    gpu_utilization_percent: float | None = None
    gpu_memory_percent: float | None = None


class LoadWindow:
    """Timestamped samples over the last `window_s` seconds (and at most `max_samples`)."""

    def __init__(self, clock: Clock, *, window_s: float = 600.0, max_samples: int = 10_000) -> None:
        if window_s <= 0 or max_samples < 2:
            raise ResilienceConfigError("LoadWindow", f"window_s must be > 0 and max_samples >= 2 (got {window_s}, {max_samples})")
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, LoadSample]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, sample: LoadSample, at: float | None = None) -> None:
        at = self._clock.monotonic() if at is None else at
        with self._lock:
            self._samples.append((at, sample))
            self._trim(at)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def latest(self) -> LoadSample | None:
        with self._lock:
            return self._samples[-1][1] if self._samples else None

    def above(self, field: LoadField, threshold: float, duration_s: float) -> bool:
        """True when every sample of the last `duration_s` seconds had `field > threshold`.

        The run of above-threshold samples at the end of the window must span `duration_s`
        itself (first to last sample), so a single high reading, or a run whose early part fell
        out of the window, never answers yes. An unavailable reading (None) breaks the run.
        """
        with self._lock:
            self._trim(self._clock.monotonic())
            run_start: float | None = None
            last: float | None = None
            for at, sample in reversed(self._samples):
                value = getattr(sample, field)
                if value is None or value <= threshold:
                    break
                run_start = at
                if last is None:
                    last = at
            if run_start is None or last is None:
                return False
            return last - run_start >= duration_s

    def max_over(self, field: LoadField, duration_s: float) -> float | None:
        """The highest available reading of `field` in the last `duration_s` seconds."""
        now = self._clock.monotonic()
        with self._lock:
            values = [
                v for at, s in self._samples
                if now - at <= duration_s and (v := getattr(s, field)) is not None
            ]
        return max(values) if values else None

    def _trim(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()


def process_tree(pids: Iterable[int]) -> set[int]:
    """`pids` and every live descendant of them: a sandboxed worker's interpreter runs under
    bubblewrap, and Inductor may start helpers, so NVML can list any of them."""
    tree: set[int] = set()
    for pid in pids:
        tree.add(int(pid))
        try:
            tree.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except (psutil.Error, OSError):
            pass  # gone since it was listed
    return tree


class GpuProbe:
    """GPU utilisation and memory use from NVML; every failure reads as unavailable.

    Whole devices by default. Given `pids` (a callable naming the compile workers' processes), it
    reads only what those processes and their descendants use: per-process memory
    (`nvmlDeviceGetComputeRunningProcesses`) and SM utilisation (`nvmlDeviceGetProcessUtilization`,
    where the driver offers it; unavailable otherwise), so a training job filling the GPU does not
    count as the forge's own load. With several GPUs it reports the busiest one (the highest
    utilisation and the fullest memory), since conservative mode protects whichever GPU the
    training job might be sharing. `nvml` is the `pynvml` module (the default) or anything with its
    call surface, which is how tests feed crafted readings.
    """

    # Class-level defaults: probes built without __init__ (scripted readings) have neither.
    total_gb: float | None = None
    pids: Callable[[], Iterable[int]] | None = None

    def __init__(
        self,
        indices: Sequence[int] | None = None,
        *,
        nvml: Any = None,
        pids: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self._indices = list(indices) if indices is not None else None
        self._handles: list[Any] = []
        self._nvml: Any = None
        self._given_nvml = nvml
        self.pids = pids
        # Per device: the newest NVML process-utilisation sample already read.
        self._seen_us: dict[int, int] = {}
        self.unavailable_reason: str | None = None
        self._lock = threading.Lock()
        self._init()

    @property
    def scope(self) -> str:
        """What the readings cover, for health: "device" or "compile workers"."""
        return "compile workers" if self.pids is not None else "device"

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def _init(self) -> None:
        try:
            nvml = self._given_nvml
            if nvml is None:
                import pynvml  # nvidia-ml-py

                nvml = pynvml

            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            indices = self._indices if self._indices is not None else list(range(count))
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices if 0 <= i < count]
            self._nvml = nvml
            if not self._handles:
                self.unavailable_reason = f"NVML reports {count} GPU(s), none selected"
            else:
                totals = []
                for handle in self._handles:
                    try:  # a device that will not say its size leaves the others' sizes
                        totals.append(float(nvml.nvmlDeviceGetMemoryInfo(handle).total))
                    except Exception as exc:  # noqa: BLE001
                        log.debug("NVML memory size unreadable: %s", exc)
                self.total_gb = min(totals) / 2**30 if totals and min(totals) > 0 else None
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError, …
            self.unavailable_reason = f"{type(exc).__name__}: {exc}"
        if self.unavailable_reason:
            log.info("GPU readings unavailable: %s", self.unavailable_reason)

    def read(self) -> tuple[float | None, float | None]:
        """(utilisation %, memory used %) of the probe's scope, each None when it cannot be read."""
        if not self.available:
            return None, None
        if self.pids is not None:
            return self._read_processes(process_tree(self.pids()))
        return self.read_device()

    def read_device(self) -> tuple[float | None, float | None]:
        """(utilisation %, memory used %) of the whole device, whoever uses it."""
        if not self.available:
            return None, None
        util: list[float] = []
        mem: list[float] = []
        with self._lock:
            for handle in self._handles:
                try:
                    util.append(float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                except Exception as exc:
                    log.debug("NVML utilisation read failed: %s", exc)
                try:
                    info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                    if info.total:
                        mem.append(100.0 * float(info.used) / float(info.total))
                except Exception as exc:
                    log.debug("NVML memory read failed: %s", exc)
        return (max(util) if util else None, max(mem) if mem else None)

    def _read_processes(self, pids: set[int]) -> tuple[float | None, float | None]:
        util: list[float] = []
        mem: list[float] = []
        with self._lock:
            for i, handle in enumerate(self._handles):
                share = self._process_util(i, handle, pids)
                if share is not None:
                    util.append(share)
                try:
                    total = float(self._nvml.nvmlDeviceGetMemoryInfo(handle).total)
                    used = [
                        p.usedGpuMemory for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                        if int(p.pid) in pids
                    ]
                    # None: the driver will not say (no permission, or a vGPU): unavailable, not 0.
                    if total and all(u is not None for u in used):
                        mem.append(100.0 * float(sum(used)) / total)
                except Exception as exc:
                    log.debug("NVML per-process memory read failed: %s", exc)
        return (max(util) if util else None, max(mem) if mem else None)

    def _process_util(self, i: int, handle: Any, pids: set[int]) -> float | None:
        """The SM utilisation of `pids` on one device since the last reading: the newest sample of
        each, summed (NVML keeps a short per-process history)."""
        try:
            samples = self._nvml.nvmlDeviceGetProcessUtilization(handle, self._seen_us.get(i, 0))
        except Exception as exc:
            # NOT_FOUND: no process ran a kernel since the last reading, which is a reading of 0.
            if getattr(exc, "value", None) == getattr(self._nvml, "NVML_ERROR_NOT_FOUND", 6):
                return 0.0
            log.debug("NVML per-process utilisation unavailable: %s", exc)
            return None
        newest: dict[int, tuple[int, float]] = {}
        for sample in samples:
            pid, at = int(sample.pid), int(sample.timeStamp)
            self._seen_us[i] = max(self._seen_us.get(i, 0), at)
            if pid in pids and at >= newest.get(pid, (-1, 0.0))[0]:
                newest[pid] = (at, float(sample.smUtil))
        return min(100.0, sum(util for _, util in newest.values()))

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
            self._handles = []
            self.unavailable_reason = "closed"


OnSample = Callable[[LoadSample], None | Awaitable[None]]


class ResourceMonitor:
    """Samples the host and keeps the readings in `window`."""

    def __init__(
        self,
        clock: Clock,
        *,
        window_s: float = 600.0,
        gpu: GpuProbe | None = None,
        process: psutil.Process | None = None,
    ) -> None:
        self._clock = clock
        self.window = LoadWindow(clock, window_s=window_s)
        self.gpu = gpu if gpu is not None else GpuProbe()
        self._process = process or psutil.Process()
        # psutil's first cpu_percent(None) call only sets the baseline and returns 0.0.
        psutil.cpu_percent(interval=None)

    def read(self) -> LoadSample:
        """One reading of the host, without recording it (blocking: psutil and NVML calls)."""
        util, gmem = self.gpu.read()
        return LoadSample(
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            memory_percent=float(psutil.virtual_memory().percent),
            rss_gb=self._process.memory_info().rss / 2**30,
            gpu_utilization_percent=util,
            gpu_memory_percent=gmem,
        )

    def record(self, sample: LoadSample) -> LoadSample:
        """Add a reading to the window and export it."""
        self.window.add(sample)
        metrics.GPU_UTILIZATION_PERCENT.set(
            math.nan if sample.gpu_utilization_percent is None else sample.gpu_utilization_percent
        )
        metrics.MEMORY_USAGE_GB.set(sample.rss_gb)
        return sample

    def sample(self) -> LoadSample:
        """Read, record and return one sample (blocking; `run` calls it off the event loop)."""
        return self.record(self.read())

    async def run(self, interval_s: float, on_sample: OnSample | None = None) -> None:
        """Sample every `interval_s` until cancelled; `on_sample` may be sync or async.

        The reading happens in a worker thread; an error in a reading or in `on_sample` is logged
        and the loop goes on, because losing the monitor silently would disable conservative mode.
        """
        if interval_s <= 0:
            raise ResilienceConfigError("ResourceMonitor.run", f"interval_s must be > 0, got {interval_s}")
        while True:
            try:
                sample = self.record(await asyncio.to_thread(self.read))
                if on_sample is not None:
                    result = on_sample(sample)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("resource monitor: sampling failed; retrying in %.1f s", interval_s)
            await self._clock.sleep(interval_s)

    def close(self) -> None:
        self.gpu.close()
