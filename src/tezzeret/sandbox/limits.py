"""Resource limits of sandbox workers: what they are for a job, and applying them to a process.

Owns: the per-job limit profile (address space by tier, CPU time, file size, process count), the
worker's scheduling (niceness, SCHED_IDLE, CPU affinity) and the thread/GPU environment, and the
two places they are applied: at spawn time in the child (`preexec`), and per job by the worker on
itself before the task runs (`lower_own_limits`). It must never decide when a worker is recycled.

Why not prlimit(2) from the service: changing another uid's limits needs CAP_SYS_RESOURCE, which
containers commonly drop (ours do), and raising a hard limit needs it too. So a worker starts with
the largest tier's address space, lowers its own hard limit to each job's (always allowed), and
the pool recycles it when a later job needs more than it has left.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import tezzeret
from tezzeret.config import Settings
from tezzeret.leyline import Strategy
from tezzeret.leyline import pb

_MB = 1024 * 1024
# The CPU budget a worker may spend importing torch and warming Inductor before its first job.
WARMUP_CPU_S = 600


@dataclass(frozen=True)
class JobLimits:
    """The limits one job runs under. `budget_s` is the deadline the task itself keeps (a compile
    cuts off an entry still running then); `timeout_s` is the sandbox's backstop, a little later,
    at which the whole sandbox is killed if the task did not stop by itself."""

    memory_mb: int
    timeout_s: float
    cpu_s: int
    file_size_mb: int
    max_processes: int
    budget_s: float = 0.0

    def as_details(self) -> list[tuple[str, str]]:
        return [
            ("limit_memory_mb", str(self.memory_mb)),
            ("limit_timeout_s", f"{self.timeout_s:g}"),
            ("limit_cpu_s", str(self.cpu_s)),
            ("limit_file_size_mb", str(self.file_size_mb)),
            ("limit_processes", str(self.max_processes)),
        ]


BACKSTOP_GRACE_S = 2.0


def backstop_s(budget_s: float) -> float:
    """When the sandbox kills a task that did not stop at its `budget_s` deadline by itself."""
    return budget_s + max(BACKSTOP_GRACE_S, 0.1 * budget_s)


def limits_for(job: pb.WorkerJob, settings: Settings) -> JobLimits:
    """The job's limits: its own `memory_limit_mb`/`timeout_ms` when set, else its tier's."""
    tier = Strategy.parse(job.strategy) if job.HasField("strategy") else settings.compilation.default_strategy
    memory_mb = int(job.memory_limit_mb) or settings.resources.per_job_memory_limits.for_strategy(tier)
    timeout_ms = int(job.timeout_ms) or settings.timeouts_ms.for_strategy(tier)
    budget_s = timeout_ms / 1000.0
    # Time for a cut-off task to write its result before the backstop kills the sandbox.
    timeout_s = backstop_s(budget_s)
    cpu_s = max(1, int(timeout_s * settings.sandbox.cpu_time_factor + 0.999))
    return JobLimits(
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        cpu_s=cpu_s,
        file_size_mb=settings.sandbox.max_file_size_mb,
        max_processes=settings.sandbox.max_processes,
        budget_s=budget_s,
    )


def spawn_limits(settings: Settings, memory_mb: int | None = None) -> JobLimits:
    """Limits a worker starts with: by default the largest tier's memory, so any job can lower it.

    The CPU-time hard limit stays unlimited: CPU time is cumulative over a worker's life, so each
    job gets a soft limit (its budget on top of what was used) and the wall clock is the backstop.
    """
    per = settings.resources.per_job_memory_limits
    return JobLimits(
        memory_mb=memory_mb or max(per.emergency, per.fast, per.standard, per.aggressive),
        timeout_s=float(WARMUP_CPU_S),
        cpu_s=WARMUP_CPU_S,
        file_size_mb=settings.sandbox.max_file_size_mb,
        max_processes=settings.sandbox.max_processes,
    )


def _pair(value: int) -> tuple[int, int]:
    return (value, value)


def preexec(limits: JobLimits, settings: Settings) -> Callable[[], None]:
    """A function run in the forked child before exec: limits, scheduling, own session."""
    niceness = settings.sandbox.niceness
    sched_idle = settings.sandbox.sched_idle
    affinity = sorted(set(settings.sandbox.cpu_affinity))

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, _pair(limits.memory_mb * _MB))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_FSIZE, _pair(limits.file_size_mb * _MB))
        resource.setrlimit(resource.RLIMIT_NPROC, _pair(limits.max_processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
        if sched_idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        if affinity:
            os.sched_setaffinity(0, affinity)

    return apply


def lower_own_limits(memory_mb: int, cpu_s: int) -> str | None:
    """Run in the worker before a task: hard address-space limit to the job's, CPU soft limit to
    what it has used plus the job's budget. Returns why not, when the job needs more than allowed.

    Lowering a hard limit is permanent for the process; the pool recycles a worker whose limit is
    below the next job's.
    """
    want = memory_mb * _MB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and want > hard:
        return f"job needs RLIMIT_AS {memory_mb} MB but this worker is capped at {hard // _MB} MB"
    resource.setrlimit(resource.RLIMIT_AS, (want, want))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + cpu_s if cpu_hard == resource.RLIM_INFINITY else min(cpu_hard, used + cpu_s)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
    return None


_PACKAGE_ROOT = str(Path(tezzeret.__file__).resolve().parent.parent)


def worker_env(settings: Settings, base: Mapping[str, str], *, tmpdir: str, user: str) -> dict[str, str]:
    """The worker's whole environment: a short allowlist, never the service's secrets."""
    threads = str(settings.sandbox.worker_threads)
    env = {
        "PATH": base.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": base.get("LANG", "C.UTF-8"),
        "HOME": tmpdir,
        "USER": user,
        "LOGNAME": user,
        "TMPDIR": tmpdir,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "TORCHINDUCTOR_COMPILE_THREADS": str(settings.sandbox.compile_threads),
        "TORCHINDUCTOR_CACHE_DIR": str(settings.inductor_cache_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # The worker imports the very tezzeret this service runs (a checkout on PYTHONPATH, an
        # editable install elsewhere): compile code of another version would build artifacts
        # under another toolchain id than the one the job was journaled with.
        "PYTHONPATH": _PACKAGE_ROOT,
        "TEZZERET_GPU_FRACTION": str(settings.compilation.gpu_utilization_limit),
    }
    for key, value in base.items():
        # ISA pins and cache switches decide what compiled code looks like; pass them through.
        if key.startswith(("TORCHINDUCTOR_CPP_", "ATEN_CPU_", "TORCHINDUCTOR_FORCE_DISABLE_CACHES")):
            env[key] = value
        elif key in ("CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", *_MPS_ENV):
            env[key] = value
    env.update(gpu_env(settings))
    return env


# Where an MPS control daemon listens: passed through, so workers join the daemon training uses.
_MPS_ENV = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")


def gpu_env(settings: Settings) -> dict[str, str]:
    """The GPU part of a worker's environment.

    - `resources.gpu_device` pins CUDA_VISIBLE_DEVICES to that one GPU, numbered as NVML and
      nvidia-smi number them (CUDA_DEVICE_ORDER=PCI_BUS_ID; CUDA's own default order is fastest
      first, which can differ), so inside the worker it is `cuda:0`.
    - CUDA_MPS_ACTIVE_THREAD_PERCENTAGE caps the SMs a worker's kernels may occupy at the
      compilation share, where an MPS daemon runs (the only way CUDA shares one GPU's SMs between
      processes by quota; without MPS the variable is ignored and time-slicing applies). Starting
      the daemon is the host's business (`nvidia-cuda-mps-control -d`, for training and workers
      alike); the sandbox must then let the pipe directory through (untested).
    """
    env = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": f"{max(1, round(settings.compilation.gpu_utilization_limit * 100))}"}
    if settings.resources.gpu_device is not None:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = str(settings.resources.gpu_device)
    return env
