"""Stage: sandbox. Compile workers that cannot escape, cannot starve training, and cannot take the forge down.

Owns the executor protocol (`Executor`: start, run, close, status) and the executors behind it
(`make_executor` picks one from `sandbox.backend`: the local worker pool `SandboxExecutor`, the
default, or `RayExecutor` over a Ray cluster; the in-process executor is for service tests),
isolation (bubblewrap, `unshare`, plain subprocess), resource limits, failure classes, the L3 relay
and the worker entry point (`python -m tezzeret.sandbox.worker`). It must never import the forge
or the API.
"""

from tezzeret.sandbox.errors import (
    BackendUnavailable,
    ExecutorNotRunning,
    IsolationUnavailable,
    SandboxError,
    TaskSpecInvalid,
    WorkerStartFailed,
)
from tezzeret.sandbox.executor import Executor, make_executor
from tezzeret.sandbox.pool import DEFAULT_TASKS, SandboxExecutor, run_job_sync
from tezzeret.sandbox.status import SandboxStatus

__all__ = [
    "DEFAULT_TASKS",
    "BackendUnavailable",
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
