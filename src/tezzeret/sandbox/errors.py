"""Typed errors of the sandbox stage.

Owns: the exceptions the executor raises for misuse or for a sandbox that cannot be set up. A job
that fails inside a worker is never an exception: it is a `pb.WorkerResult` with an outcome. This
module must never import the pool or the worker.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class SandboxError(TezzeretError):
    """Base of the sandbox's errors."""

    code = "SANDBOX_ERROR"


class IsolationUnavailable(SandboxError):
    """The isolation level named in `sandbox.isolation` cannot be used on this machine."""

    code = "SANDBOX_ISOLATION_UNAVAILABLE"


class ExecutorNotRunning(SandboxError):
    """`run` was called before `start()` or after `close()`."""

    code = "SANDBOX_NOT_RUNNING"


class TaskSpecInvalid(SandboxError):
    """A task mapping entry is not of the form `module:function`."""

    code = "SANDBOX_TASK_SPEC_INVALID"


class WorkerStartFailed(SandboxError):
    """A worker process died or stayed silent before reporting ready; the message has its stderr."""

    code = "SANDBOX_WORKER_START_FAILED"


class BackendUnavailable(SandboxError):
    """The executor backend named in `sandbox.backend` cannot be used (Ray not installed, or its
    cluster unreachable); the message says what to install or check."""

    code = "SANDBOX_BACKEND_UNAVAILABLE"
