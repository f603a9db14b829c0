"""Stage: sandbox. Compile workers that cannot escape, cannot starve training, and cannot take the forge down.

Owns the worker pool (`SandboxExecutor`), isolation (bubblewrap, `unshare`, plain subprocess),
resource limits, failure classes and the worker entry point (`python -m tezzeret.sandbox.worker`).
It must never import the forge or the API.
"""

from tezzeret.sandbox.errors import (
    ExecutorNotRunning,
    IsolationUnavailable,
    SandboxError,
    TaskSpecInvalid,
    WorkerStartFailed,
)
from tezzeret.sandbox.pool import DEFAULT_TASKS, SandboxExecutor, SandboxStatus, run_job_sync

__all__ = [
    "DEFAULT_TASKS",
    "ExecutorNotRunning",
    "IsolationUnavailable",
    "SandboxError",
    "SandboxExecutor",
    "SandboxStatus",
    "TaskSpecInvalid",
    "WorkerStartFailed",
    "run_job_sync",
]
