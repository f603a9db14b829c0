"""Test harness: a real SandboxExecutor on its own event-loop thread, driven synchronously.

Owns: starting one executor per test module with test settings (small limits so abuse ends fast),
and the health check every abuse test ends with. It must never stand in for the executor: every
job runs in real sandboxed worker processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
# The Ray tests' driver processes import this module with only this folder on the path: no
# conftest put tests/support there.
if str(HERE.parent / "support") not in sys.path:
    sys.path.insert(0, str(HERE.parent / "support"))

from settings import settings_for  # noqa: E402

from tezzeret.config import Settings  # noqa: E402
from tezzeret.leyline import pb  # noqa: E402
from tezzeret.sandbox import SandboxExecutor  # noqa: E402
from tezzeret.sandbox.outcome import detail  # noqa: E402

# Small limits, so abuse ends fast.
SANDBOX_LIMITS = {
    "compilation": {"max_concurrent_jobs": 1},
    "emergency": {"reserved_worker": True},
    # niceness 1, not the default 10: still checkable, and shared CI cores do not starve respawns.
    # No contention cap: the other test worker keeps the host busy, and a capped job's timeout
    # counts only its share (test_sandbox_throttle.py sets the cap it tests).
    "sandbox": {"max_file_size_mb": 8, "max_processes": 48, "max_jobs_per_worker": 50, "niceness": 1,
                "contended_cpu_quota": 0},
    "resources": {"per_job_memory_limits": {"emergency": 1536, "fast": 2048, "standard": 2560, "aggressive": 3072}},
}


def sandbox_settings(state_dir: Path, **overrides: Any) -> Settings:
    """The sandbox tests' settings on `state_dir`: `SANDBOX_LIMITS` under `overrides`."""
    return settings_for(state_dir, SANDBOX_LIMITS, **overrides)


class LiveExecutor:
    """A started executor plus the loop thread it lives on."""

    def __init__(self, settings: Settings, tasks: Mapping[str, str]) -> None:
        self.settings = settings
        self.ended: list[tuple[str, int]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sandbox-test-loop", daemon=True)
        self.thread.start()
        self.executor = SandboxExecutor(
            # Payloads never compile: "torch" warm-up keeps each respawn after an abuse test short.
            settings, tasks=tasks, extra_sys_path=[HERE], warm="torch",
            on_result=lambda job, result: self.ended.append((job.job_id, result.outcome)),
        )
        self.call(self.executor.start())

    def call(self, coro: Any, timeout: float = 240) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, task: str, *, emergency: bool = False, **fields: Any) -> pb.WorkerResult:
        params = fields.pop("params", {})
        job = pb.WorkerJob(schema_version=1, job_id=fields.pop("job_id", f"{task}-{uuid.uuid4().hex[:8]}"), task=task, **fields)
        for key, value in params.items():
            job.params.add(key=key, value=str(value))
        return self.call(self.executor.run(job, emergency=emergency))

    def close(self) -> None:
        try:
            self.call(self.executor.close(0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def assert_healthy(self) -> pb.WorkerResult:
        """The pool has every worker back and the next job succeeds."""
        self.call(self.executor.wait_ready())
        status = self.executor.status()
        assert status.workers_alive == status.slots, status
        result = self.run("tiny_torch", strategy=pb.STRATEGY_FAST)
        assert result.outcome == pb.OUTCOME_SUCCESS, result
        return result


def stray_sandbox_processes(uid: int, marker: str, live: list[int], wait_s: float = 10.0) -> list[int]:
    """Processes of the sandbox uid started by this test's executor (their command line names its
    state dir; forks inherit it) other than the live workers, after letting teardown finish.
    Other executors on the machine may use the same uid, hence the marker."""
    deadline = time.monotonic() + wait_s
    while True:
        stray = [
            p.pid for p in psutil.process_iter(["uids", "cmdline"])
            if p.info["uids"] and p.info["uids"].real == uid and p.pid not in live
            and any(marker in arg for arg in (p.info["cmdline"] or []))
        ]
        if not stray or time.monotonic() > deadline:
            return stray
        time.sleep(0.2)


def details(result: pb.WorkerResult) -> dict[str, str]:
    return {kv.key: kv.value for kv in result.details}


__all__ = ["HERE", "LiveExecutor", "detail", "details", "stray_sandbox_processes", "sandbox_settings", "os"]
