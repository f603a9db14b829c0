"""`InProcessExecutor`: runs worker tasks in this process, in a thread (rq's `SimpleWorker`).

Owns: the executor contract (`executor.Executor`) without processes: the task function named by
`job.task` runs on a thread of this process, its result or exception becomes one
`pb.WorkerResult`, and the job's wall-clock limit ends the wait with OUTCOME_TIMEOUT. Service tests
use it to drive scheduling, journaling, fallbacks and publishing in milliseconds, with real task
functions (the real compile task included) but no torch worker to start.

It isolates nothing: no namespaces, no rlimits, and a timed-out task's thread runs on to its end
(Python cannot kill a thread). It must never be the backend of a service that compiles untrusted
blueprints: no configuration key selects it; only code that builds a forge with it explicitly
(tests, embedders) gets it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

from tezzeret.config import Settings
from tezzeret.leyline import pb
from tezzeret.sandbox.errors import ExecutorNotRunning, TaskSpecInvalid
from tezzeret.sandbox.limits import limits_for
from tezzeret.sandbox.outcome import classify_exception
from tezzeret.sandbox.status import SandboxStatus

log = logging.getLogger(__name__)

TaskFn = Callable[[pb.WorkerJob, Path], pb.WorkerResult]


def resolve_task(spec: str) -> TaskFn:
    """`"package.module:function"` → the function; raises `TaskSpecInvalid` naming the spec."""
    module_name, _, fn_name = spec.partition(":")
    if not module_name or not fn_name:
        raise TaskSpecInvalid(f"task spec {spec!r}: expected 'package.module:function'")
    try:
        fn: TaskFn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise TaskSpecInvalid(f"task spec {spec!r} cannot be imported: {exc}") from None
    return fn


class InProcessExecutor:
    """Runs jobs on threads of this process; `slots` of them at once (plus an emergency one)."""

    def __init__(self, settings: Settings, *, tasks: Mapping[str, str] | None = None) -> None:
        from tezzeret.sandbox.pool import DEFAULT_TASKS

        self.settings = settings
        self.tasks: dict[str, TaskFn] = {
            name: resolve_task(spec) for name, spec in dict(DEFAULT_TASKS if tasks is None else tasks).items()
        }
        self._root = settings.state_dir / "sandbox" / "inprocess"
        self._slots = settings.compile_slots()
        self._general: asyncio.Semaphore | None = None
        self._emergency: asyncio.Semaphore | None = None
        self._running = False
        self._busy = 0
        self._jobs_run = 0

    async def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        self._general = asyncio.Semaphore(self._slots)
        self._emergency = asyncio.Semaphore(1)
        self._running = True

    async def close(self, grace_s: float | None = None) -> None:
        self._running = False
        deadline = time.monotonic() + (grace_s or 0.0)
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def waiting_reason(self, job_id: str) -> str | None:
        """A local job waits only for a free worker, which the queue position already says."""
        return None

    def status(self) -> SandboxStatus:
        return SandboxStatus(
            isolation_level="inprocess", isolation_note="tasks run in the service process: no isolation",
            skipped_levels=[], net_isolated=False, fs_readonly=False, nproc_enforced=False, worker_uid=None,
            workers_alive=self._slots + 1 if self._running else 0, workers_busy=self._busy, slots=self._slots + 1,
            emergency_slot=True, jobs_run=self._jobs_run, recycled=0, last_spawn_error=None,
            throttle={"off": "in-process executor"}, backend="inprocess",
        )

    async def run(self, job: pb.WorkerJob, *, emergency: bool = False) -> pb.WorkerResult:
        if not self._running or self._general is None or self._emergency is None:
            raise ExecutorNotRunning("the in-process executor is not running: call `await executor.start()` first")
        lane = self._emergency if emergency else self._general
        async with lane:
            self._busy += 1
            try:
                return await self._run(job)
            finally:
                self._busy -= 1
                self._jobs_run += 1

    async def _run(self, job: pb.WorkerJob) -> pb.WorkerResult:
        started = time.perf_counter()
        fn = self.tasks.get(job.task or "compile")
        if fn is None:
            return pb.WorkerResult(
                job_id=job.job_id, outcome=pb.OUTCOME_REJECTED, error_code="SANDBOX_UNKNOWN_TASK",
                error=f"task {job.task!r} is not in this executor's task mapping",
            )
        job_limits = limits_for(job, self.settings)
        job_dir = self._root / job.job_id
        shutil.rmtree(job_dir, ignore_errors=True)
        (job_dir / "out").mkdir(parents=True)
        inner = pb.WorkerJob()
        inner.CopyFrom(job)
        # As in the pool: outputs land in the job's output dir, or under `results/` when it has none.
        out = Path(job.output_dir) if job.output_dir else self._root / "results" / job.job_id
        out.mkdir(parents=True, exist_ok=True)
        inner.output_dir = str(out)
        inner.memory_limit_mb = job_limits.memory_mb
        inner.timeout_ms = int(job_limits.budget_s * 1000)
        try:
            result = await asyncio.wait_for(asyncio.to_thread(fn, inner, job_dir), job_limits.timeout_s)
            if not isinstance(result, pb.WorkerResult):
                raise TypeError(f"task {job.task!r} returned {type(result).__name__}, not leyline.WorkerResult")
        except (TimeoutError, asyncio.TimeoutError):
            result = pb.WorkerResult(
                outcome=pb.OUTCOME_TIMEOUT, error_code="SANDBOX_TIMEOUT",
                error=f"no answer within the {job_limits.timeout_s:g} s wall-clock limit",
            )
        except Exception as exc:  # noqa: BLE001 - a task failure is a result, as in a worker
            outcome, code = classify_exception(exc)
            result = pb.WorkerResult(outcome=outcome, error=f"{type(exc).__name__}: {exc}"[:2000], error_code=code)
            result.details.add(key="traceback", value=traceback.format_exc()[-4000:])
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
        result.job_id = result.job_id or job.job_id
        if not result.HasField("compile_ms"):
            result.compile_ms = (time.perf_counter() - started) * 1000.0
        result.details.add(key="isolation", value="inprocess")
        return result
