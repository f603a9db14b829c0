"""The executor contract (`tezzeret.sandbox.executor`) on both backends: the local bubblewrap pool
and Ray (a bubblewrap pool on each node of a real local cluster).

A job that succeeds leaves its artifact's bytes in `job.output_dir` on this host; a failing job
is a result, never an exception; status is a plain call that never waits; close ends running jobs
as a shutdown and leaves no process behind.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import psutil
import pytest
from executor_harness import LoopExecutor, blob_bytes, details, executor_settings

from tezzeret.leyline import pb
from tezzeret.sandbox import ExecutorNotRunning, SandboxExecutor


def test_success_brings_the_artifact_bytes_home(executor: LoopExecutor, backend: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = executor.run("blob", params={"mib": 4}, output_dir=str(out), target="cpu-test")
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    assert Path(result.artifact_path) == out / "blob.bin"
    assert (out / "blob.bin").read_bytes() == blob_bytes(4)
    assert (out / "sub" / "note.txt").read_text() == result.job_id
    status = executor.status()
    assert status.backend == backend
    assert details(result)["isolation"] == status.isolation_level
    if backend == "ray":
        assert details(result)["node_id"] in {n["node_id"] for n in status.nodes}


def test_a_failing_job_is_a_result_not_an_exception(executor: LoopExecutor) -> None:
    rejected = executor.run("reject", target="cpu-test")
    assert rejected.outcome == pb.OUTCOME_REJECTED and rejected.error_code == "BLUEPRINT_UNKNOWN_OP", rejected
    unknown = executor.run("no_such_task", target="cpu-test")
    assert unknown.outcome == pb.OUTCOME_REJECTED and unknown.error_code == "SANDBOX_UNKNOWN_TASK", unknown
    bad_id = executor.submit(pb.WorkerJob(job_id="../escape", task="noop", target="cpu-test")).result(60)
    assert bad_id.outcome == pb.OUTCOME_REJECTED and bad_id.error_code == "SANDBOX_BAD_JOB_ID", bad_id
    hung = executor.run("spin", timeout_ms=1500, target="model-a")
    assert hung.outcome == pb.OUTCOME_TIMEOUT, hung
    # The killed worker is replaced: the next job on that node succeeds.
    assert executor.run("noop", target="model-a").outcome == pb.OUTCOME_SUCCESS


def test_status_is_a_plain_call_that_shows_jobs_in_flight(executor: LoopExecutor, backend: str) -> None:
    assert not inspect.iscoroutinefunction(executor.executor.status)
    sleeping = executor.submit(executor.job("sleep", params={"s": 3}, target="model-b"))
    executor.wait_for("the job to be in flight", lambda: executor.executor.status().workers_busy >= 1)
    status = executor.status()
    assert status.slots >= 1 and status.workers_alive >= 1 and status.net_isolated
    if backend == "ray":
        node_b = [n for n in status.nodes if "model-b" in n["targets"]]
        assert len(node_b) == 1 and node_b[0]["in_flight"] == 1 and node_b[0]["state"] == "ready", status.nodes
        assert node_b[0]["warm_workers"] >= 1
    assert sleeping.result(120).outcome == pb.OUTCOME_SUCCESS


def test_emergency_lane_runs_beside_a_busy_general_slot(executor: LoopExecutor) -> None:
    busy = executor.submit(executor.job("sleep", params={"s": 4}, target="model-a"))
    executor.wait_for("the general job to run", lambda: executor.executor.status().workers_busy >= 1)
    # The EMERGENCY tier's limits: the reserved worker was started for them.
    urgent = executor.run("noop", emergency=True, target="model-a", strategy=pb.STRATEGY_EMERGENCY)
    assert urgent.outcome == pb.OUTCOME_SUCCESS, urgent
    assert not busy.done(), "the emergency job waited for the general slot"
    assert busy.result(120).outcome == pb.OUTCOME_SUCCESS


def _process_tree(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out += [pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            pass
    return out


def _alive(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.Error:
            pass
    return left


def test_close_ends_running_jobs_and_leaves_nothing(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    live = LoopExecutor(executor_settings(tmp_path / "state", backend, emergency={"reserved_worker": False}))
    try:
        running = live.submit(live.job("spin", target="model-a"))
        live.wait_for("the job to be in flight", lambda: live.executor.status().workers_busy >= 1)
        time.sleep(0.5)
        if isinstance(live.executor, SandboxExecutor):
            roots = live.executor.worker_pids()
        else:
            roots = [a["pid"] for n in live.status().nodes for a in n["actors"]]
        pids = _process_tree(roots)
        assert pids
    finally:
        live.close(0.2)
    stopped = running.result(60)
    assert stopped.outcome == pb.OUTCOME_INTERNAL_ERROR and stopped.error_code == "SANDBOX_SHUTDOWN", stopped
    with pytest.raises(ExecutorNotRunning):
        asyncio_run(live.executor.run(live.job("noop")))
    deadline = time.monotonic() + 30
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(pids) == []


def asyncio_run(coro: object) -> object:
    import asyncio

    return asyncio.run(coro)  # type: ignore[arg-type]
