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
