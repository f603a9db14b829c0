"""The executor protocol: what the forge needs from whatever runs its compile jobs.

Owns the seam between the forge and the machines that compile: `Executor` (start, run, close,
status) and the contract every implementation keeps:

- `run(job)` never raises for a job that failed: every job ends as exactly one `pb.WorkerResult`
  whose `outcome` says how (a failure is a result, never an exception).
- On success, `result.artifact_path` names a file on *this* host inside `job.output_dir`; the
  forge verifies, signs and stores it from there. Remote executors copy the bytes back first.
- The signing key, the WAL and the store never leave the forge's process: an executor sees the
  job (the blueprint's bytes and its limits) and nothing else.
- `status()` is cheap and never blocks: health reads it on every request.

Implementations: `pool.SandboxExecutor` (local pre-warmed workers under bubblewrap, the default),
`inprocess.InProcessExecutor` (tasks run in this process, for service tests), and
`ray_executor.RayExecutor` (`sandbox.backend: ray`). `make_executor` builds the one the
configuration names. Must never import the forge or the API, nor Ray unless the backend is ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tezzeret.config import Settings
from tezzeret.leyline import pb
from tezzeret.sandbox.status import SandboxStatus


@runtime_checkable
class Executor(Protocol):
    async def start(self) -> None:
        """Get ready to run jobs (spawn and warm workers, connect to a cluster); waits until ready."""

    async def run(self, job: pb.WorkerJob, *, emergency: bool = False) -> pb.WorkerResult:
        """Run one job to its end and return its result; never raises for a job failure."""

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking jobs, give running ones up to `grace_s`, then stop everything."""

    def status(self) -> SandboxStatus:
        """What health and operators see: workers, slots, isolation, per-node state."""

    def waiting_reason(self, job_id: str) -> str | None:
        """Why `job_id`, handed to `run`, has not started yet (e.g. no node offers its target);
        None when it is running, unknown or ended."""


def make_executor(
    settings: Settings,
    *,
    tasks: Mapping[str, str] | None = None,
    on_result: Callable[[pb.WorkerJob, pb.WorkerResult], None] | None = None,
    extra_sys_path: Sequence[Path] = (),
    warm: Literal["inductor", "torch", "none"] = "inductor",
) -> Executor:
    """The executor `sandbox.backend` names, not started: the local pool, or the Ray executor
    (imports Ray; raises `BackendUnavailable` when it is not installed). The arguments are the
    pool's (see `SandboxExecutor`); with Ray they travel to every node's pool."""
    if settings.sandbox.backend == "ray":
        from tezzeret.sandbox.ray_executor import RayExecutor

        return RayExecutor(settings, tasks=tasks, on_result=on_result, extra_sys_path=extra_sys_path, warm=warm)
    from tezzeret.sandbox.pool import SandboxExecutor

    return SandboxExecutor(settings, tasks=tasks, on_result=on_result, extra_sys_path=extra_sys_path, warm=warm)
