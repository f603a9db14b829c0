"""Worker tasks for service tests that run on the in-process executor (same process, so a test can
hold a compile at a gate or make it fail without a worker to kill)."""

from __future__ import annotations

import threading
from pathlib import Path

from tezzeret.compile.task import run_compile_task
from tezzeret.leyline import pb

GATE = threading.Event()
CALLS: list[str] = []


def gated_compile(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """The real compile task, once the test opens `GATE`."""
    CALLS.append(job.job_id)
    if not GATE.wait(120):
        raise TimeoutError("the test never opened the gate")
    return run_compile_task(job, job_dir)


def crashing_compile(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    CALLS.append(job.job_id)
    if not GATE.wait(120):
        raise TimeoutError("the test never opened the gate")
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_CRASH, error="killed by SIGKILL", error_code="SANDBOX_CRASH")


def _tier(job: pb.WorkerJob) -> str:
    return pb.CompilationStrategy.Name(job.strategy).removeprefix("STRATEGY_")


def fast_fails_verification(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """FAST cannot verify this blueprint (as torch 2.13's conv gradients once could not); the other
    tiers compile for real."""
    CALLS.append(f"{job.job_id}:{_tier(job)}")
    if _tier(job) == "FAST":
        return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_REJECTED, error_code="COMPILE_VERIFICATION_FAILED",
                               error="no entry passed verification against eager: weight gradients differ")
    return run_compile_task(job, job_dir)


def always_times_out(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """A blueprint that cannot compile in any tier's budget."""
    CALLS.append(f"{job.job_id}:{_tier(job)}")
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_TIMEOUT, error_code="COMPILE_BUDGET_EXCEEDED",
                           error="cut off at the tier's deadline with no entry verified")


def held(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Holds its slot until the test opens `GATE`, then ends without compiling anything."""
    CALLS.append(f"{job.job_id}:{_tier(job)}")
    GATE.wait(120)
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_CRASH, error="held by the test", error_code="TEST_HELD")
