"""Test harness for any executor (local pool or Ray): on its own event-loop thread, driven
synchronously, so one started executor can serve a whole test session.

Owns: `LoopExecutor` (start, run, submit, status, close on that thread), the settings the contract
and Ray tests share, and the local Ray cluster the session fixture starts. It must never stand in
for an executor: every job runs in real sandboxed workers, on real Ray nodes for the Ray backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sandbox_harness import HERE, sandbox_settings
from sandbox_payloads import TASKS

from tezzeret.config import Settings
from tezzeret.leyline import pb
from tezzeret.sandbox import DEFAULT_TASKS, make_executor

T = TypeVar("T")

# The test payloads plus the real compile task.
EXECUTOR_TASKS = {**TASKS, **DEFAULT_TASKS}

# Both worker nodes offer "cpu-test" (a resubmitted job can land on either); each offers one model.
NODE_RESOURCES: Mapping[str, dict[str, float]] = {
    "a": {"tezzeret_cpu_test": 1, "tezzeret_gpu_model_a": 1},
    "b": {"tezzeret_cpu_test": 1, "tezzeret_gpu_model_b": 1},
}
TARGETS = {
    "cpu-test": {"tezzeret_cpu_test": 1},
    "model-a": {"tezzeret_gpu_model_a": 1},
    "model-b": {"tezzeret_gpu_model_b": 1},
    "model-c": {"tezzeret_gpu_model_c": 1},
}


def executor_settings(state_dir: Path, backend: str, **overrides: Any) -> Settings:
    """The sandbox tests' settings on `backend`. The CPU cap is off: the Ray test cluster's nodes
    share one machine, and each node's pool would count the other's jobs as training load."""
    ray = {
        "targets": TARGETS,
        "node_state_dir": str(state_dir / "nodes"),
        "poll_interval_s": 0.5,
        "unplaceable_timeout_s": 3,
        "drain_after_failures": 2,
        "drain_s": 5,
        "namespace": f"tz-test-{uuid.uuid4().hex[:8]}",
        "start_timeout_s": 180,
        # A sliver of a resource only the worker nodes have, not a CPU: tests start several
        # executors (each with its own actors) on the same one-CPU nodes.
        "actor_resources": {"tezzeret_cpu_test": 0.01},
    } | overrides.pop("ray", {})
    sandbox = {"backend": backend, "contended_cpu_quota": 0} | overrides.pop("sandbox", {})
    return sandbox_settings(state_dir, sandbox=sandbox, ray=ray, **overrides)


class LoopExecutor:
    """A started executor plus the loop thread it lives on."""

    def __init__(self, settings: Settings, tasks: Mapping[str, str] = EXECUTOR_TASKS) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="executor-test-loop", daemon=True)
        self.thread.start()
        # Payloads and EMERGENCY compiles never use Inductor: "torch" warm-up keeps starts short.
        self.executor = make_executor(settings, tasks=tasks, extra_sys_path=[HERE], warm="torch")
        self.call(self.executor.start(), timeout=600)

    def call(self, coro: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Callable[[], T]) -> T:
        async def go() -> T:
            return fn()

        return self.call(go())  # type: ignore[no-any-return]

    @staticmethod
    def job(task: str, **fields: Any) -> pb.WorkerJob:
        params = fields.pop("params", {})
        job = pb.WorkerJob(schema_version=1, job_id=fields.pop("job_id", f"{task}-{uuid.uuid4().hex[:8]}"), task=task, **fields)
        for key, value in params.items():
            job.params.add(key=key, value=str(value))
        return job

    def submit(self, job: pb.WorkerJob, *, emergency: bool = False) -> concurrent.futures.Future[pb.WorkerResult]:
        return asyncio.run_coroutine_threadsafe(self.executor.run(job, emergency=emergency), self.loop)

    def run(self, task: str, *, emergency: bool = False, timeout: float = 300, **fields: Any) -> pb.WorkerResult:
        return self.submit(self.job(task, **fields), emergency=emergency).result(timeout)

    def status(self) -> Any:
        return self.on_loop(self.executor.status)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        """Poll `check` (on the loop) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.on_loop(check)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; status: {self.status()}")

    def close(self, grace_s: float = 0) -> None:
        try:
            self.call(self.executor.close(grace_s), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def details(result: pb.WorkerResult) -> dict[str, str]:
    return {kv.key: kv.value for kv in result.details}


def blob_bytes(mib: float) -> bytes:
    """What the `blob` payload writes for `mib`."""
    size = int(mib * 1024 * 1024)
    return bytes(range(256)) * (size // 256) + b"\0" * (size % 256)
