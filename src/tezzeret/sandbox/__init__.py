"""Stage: sandbox. Compile workers that cannot escape, cannot starve training, and cannot take the forge down.

Owns the executor protocol (`Executor`: start, run, close, status) and `make_executor`, which
builds the one `sandbox.backend` names; the local worker pool (`SandboxExecutor`, the default),
isolation (bubblewrap, `unshare`, plain subprocess), resource limits, failure classes and the
worker entry point (`python -m tezzeret.sandbox.worker`); and the in-process executor for service
tests. It must never import the forge or the API.
"""

from tezzeret.config import Settings
from tezzeret.sandbox.errors import (
    ExecutorNotRunning,
    IsolationUnavailable,
    SandboxError,
    TaskSpecInvalid,
    WorkerStartFailed,
)
from tezzeret.sandbox.executor import Executor
from tezzeret.sandbox.pool import DEFAULT_TASKS, SandboxExecutor, run_job_sync
from tezzeret.sandbox.status import SandboxStatus


def make_executor(settings: Settings) -> Executor:
    """The executor `sandbox.backend` names: the local bubblewrap pool by default."""
    return SandboxExecutor(settings)


__all__ = [
    "DEFAULT_TASKS",
    "Executor",
    "ExecutorNotRunning",
    "IsolationUnavailable",
    "SandboxError",
    "SandboxExecutor",
    "SandboxStatus",
    "TaskSpecInvalid",
    "WorkerStartFailed",
    "make_executor",
    "run_job_sync",
]
