"""Pool behaviour under the weaker `unshare` level: honest status, recycling, clean shutdown."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import psutil
import pytest

from sandbox_harness import HERE, details, sandbox_settings
from sandbox_payloads import TASKS
from tezzeret.leyline import pb
from tezzeret.sandbox import ExecutorNotRunning, SandboxExecutor
from tezzeret.sandbox.isolation import probe_level


@pytest.mark.skipif(not probe_level("unshare")[0], reason="unshare is not permitted here")
async def test_unshare_level_recycles_and_reports_itself(tmp_path: Path) -> None:
    settings = sandbox_settings(
        tmp_path / "state",
        emergency={"reserved_worker": False},
        sandbox={"isolation": "unshare", "max_jobs_per_worker": 2, "max_file_size_mb": 8, "max_processes": 48, "niceness": 1},
    )
    ended: list[int] = []
    executor = SandboxExecutor(settings, tasks=TASKS, extra_sys_path=[HERE], on_result=lambda j, r: ended.append(r.outcome))
    with pytest.raises(ExecutorNotRunning):
        await executor.run(pb.WorkerJob(job_id="early", task="tiny_torch"))
    await executor.start()
    pids: list[int] = []
    try:
        status = executor.status()
        assert executor.isolation_level == "unshare" == status.isolation_level
        assert status.net_isolated and not status.fs_readonly
        if not status.nproc_enforced:
            assert "RLIMIT_NPROC is not enforced" in status.isolation_note
        pids += executor.worker_pids()
        for i in range(3):
            result = await executor.run(pb.WorkerJob(job_id=f"t{i}", task="tiny_torch", strategy=pb.STRATEGY_FAST))
            assert result.outcome == pb.OUTCOME_SUCCESS, result
            assert details(result)["isolation"] == "unshare"
            pids += executor.worker_pids()
        assert executor.status().recycled == 1
        assert executor.status().jobs_run == 3
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            net = await executor.run(pb.WorkerJob(job_id="net", task="connect_out", strategy=pb.STRATEGY_FAST,
                                                  params=[pb.KeyValue(key="port", value=str(listener.getsockname()[1]))]))
            assert details(net)["connect"] != "connected"
        assert ended == [pb.OUTCOME_SUCCESS] * 4
        pids += executor.worker_pids()
        # Closing with a job in flight ends it as a shutdown, not as a failure of the job.
        spinning = asyncio.create_task(executor.run(pb.WorkerJob(job_id="spin", task="spin", strategy=pb.STRATEGY_FAST)))
        await asyncio.sleep(1.0)
        assert executor.status().workers_busy == 1
        await executor.close(0.2)
        stopped = await spinning
        assert stopped.outcome == pb.OUTCOME_INTERNAL_ERROR and stopped.error_code == "SANDBOX_SHUTDOWN", stopped
    finally:
        await executor.close(0)
    alive = [pid for pid in set(pids) if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not (settings.state_dir / "sandbox" / "workers").exists() or not any((settings.state_dir / "sandbox" / "workers").iterdir())
    shutil.rmtree(tmp_path, ignore_errors=True)
