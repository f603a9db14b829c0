"""Worker tasks for the forge-on-Ray tests: the real compile task, started late enough that a test
can kill the compile node (or the forge) while the job is in flight on it."""

from __future__ import annotations

import time
from pathlib import Path

from tezzeret.compile.task import run_compile_task
from tezzeret.leyline import pb

HOLD_S = 20.0


def slow_compile(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    time.sleep(HOLD_S)
    return run_compile_task(job, job_dir)
