"""Escape and abuse suite: hostile payloads through the real executor, then a healthy pool."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sandbox_harness import HERE, LiveExecutor, details, stray_sandbox_processes, sandbox_settings
from sandbox_payloads import TASKS
from tezzeret.leyline import pb

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="the escape suite needs bubblewrap")


@pytest.fixture(scope="module")
def outside_root() -> Iterator[Path]:
    # Outside /tmp on purpose: /var/tmp is visible through the read-only root unless covered.
    path = Path(tempfile.mkdtemp(prefix="tezzeret-sandbox-test-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, outside_root: Path) -> Iterator[LiveExecutor]:
    os.environ["TEZZERET_TEST_SECRET"] = "must-not-reach-workers"
    key_dir, wal_dir = outside_root / "keys", outside_root / "wal"
    # World-readable on purpose: only the sandbox's covers may keep a worker from reading them.
    for path in (outside_root, key_dir, wal_dir):
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    (key_dir / "signing.key").write_text("secret")
    (wal_dir / "00000001.wal").write_text("journal")
    settings = sandbox_settings(
        tmp_path_factory.mktemp("state"),
        signing={"key_dir": str(key_dir)},
        wal={"path": str(wal_dir)},
        sandbox={"isolation": "bwrap", "max_file_size_mb": 8, "max_processes": 48, "max_jobs_per_worker": 50, "niceness": 1},
    )
    executor = LiveExecutor(settings, TASKS)
    yield executor
    executor.close()
    os.environ.pop("TEZZERET_TEST_SECRET", None)


def test_tiny_torch_job_runs_isolated_with_limits(live: LiveExecutor, tmp_path: Path) -> None:
    status = live.executor.status()
    assert status.isolation_level == "bwrap" and status.net_isolated and status.fs_readonly
    result = live.run("tiny_torch", strategy=pb.STRATEGY_FAST, output_dir=str(tmp_path / "out"))
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    d = details(result)
    assert Path(result.artifact_path) == tmp_path / "out" / "weights.pt"
    weights = torch.load(result.artifact_path, weights_only=True)
    assert weights["weight"].shape == (4, 8)
    assert (tmp_path / "out" / "notes.txt").read_text() == "extra output\n"
    assert int(d["rlimit_as"]) == 2048 * 1024 * 1024
    assert int(d["rlimit_fsize"]) == 8 * 1024 * 1024
    # CPU time is cumulative: the soft limit is what the worker used plus this job's budget.
    assert int(d["cpu_used"]) < int(d["rlimit_cpu_soft"]) <= int(d["cpu_used"]) + int(d["limit_cpu_s"]) + 2
    assert int(d["nice"]) == live.settings.sandbox.niceness
    assert d["threads"] == "1" and d["omp"] == "1"
    assert "TEZZERET_TEST_SECRET" not in d["env_keys"].split(",")
    if os.geteuid() == 0:
        assert d["uid"] == str(live.settings.sandbox.worker_uid)
        assert int(d["rlimit_nproc"]) == 48
    assert live.ended[-1] == (result.job_id, pb.OUTCOME_SUCCESS)


def test_a_job_needing_more_memory_gets_a_fresh_worker(live: LiveExecutor) -> None:
    fast = live.run("tiny_torch", strategy=pb.STRATEGY_FAST)
    assert int(details(fast)["rlimit_as"]) == 2048 * 1024 * 1024
    recycled = live.executor.status().recycled
    standard = live.run("tiny_torch", strategy=pb.STRATEGY_STANDARD)
    assert standard.outcome == pb.OUTCOME_SUCCESS, standard
    assert int(details(standard)["rlimit_as"]) == 2560 * 1024 * 1024
    assert live.executor.status().recycled == recycled + 1
    lower = live.run("tiny_torch", strategy=pb.STRATEGY_FAST)
    assert int(details(lower)["rlimit_as"]) == 2048 * 1024 * 1024
    assert live.executor.status().recycled == recycled + 1


def test_loopback_listener_outside_is_unreachable(live: LiveExecutor) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        result = live.run("connect_out", strategy=pb.STRATEGY_FAST, params={"port": listener.getsockname()[1]})
        assert result.outcome == pb.OUTCOME_SUCCESS, result
        assert details(result)["connect"] != "connected"
        assert "ECONNREFUSED" in details(result)["connect"] or "ENETUNREACH" in details(result)["connect"]
        with pytest.raises(BlockingIOError):
            listener.accept()
    live.assert_healthy()


def test_writes_outside_the_job_dir_fail(live: LiveExecutor, tmp_path: Path, outside_root: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    targets = [
        tmp_path / f"escape-{tag}.txt",
        outside_root / f"escape-{tag}.txt",
        HERE / f"escape-{tag}.txt",
        live.settings.inductor_cache_dir.parent / f"escape-{tag}.txt",
        Path(f"/etc/escape-{tag}"),
    ]
    try:
        result = live.run("write_outside", strategy=pb.STRATEGY_FAST, params={"targets": ",".join(map(str, targets))})
        assert result.outcome == pb.OUTCOME_SUCCESS, result
        assert details(result)["inside"] == "fine"
        for target in targets:
            assert not target.exists(), f"{target} was written from inside the sandbox"
        assert "=written" not in details(result)["writes"].replace(f"/tmp/escape-{tag}", "")
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
    live.assert_healthy()


def test_signing_keys_and_wal_are_not_visible(live: LiveExecutor) -> None:
    s = live.settings
    targets = [s.key_dir, s.wal_dir, s.state_dir, s.store_dir]
    result = live.run("peek_secrets", strategy=pb.STRATEGY_FAST, params={"targets": ",".join(map(str, targets))})
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    seen = details(result)["seen"]
    assert "signing.key" not in seen and "00000001.wal" not in seen
    assert f"{s.key_dir}=listed:;" in seen and f"{s.wal_dir}=listed:;" in seen
    assert f"{s.state_dir}=listed:inductor|sandbox;" in seen
    live.assert_healthy()


def test_fork_bomb_is_contained(live: LiveExecutor) -> None:
    result = live.run("fork_bomb", strategy=pb.STRATEGY_FAST, timeout_ms=4000)
    assert result.outcome == pb.OUTCOME_TIMEOUT, result
    assert "fork refused" in details(result).get("stderr_tail", ""), result
    live.call(live.executor.wait_ready())
    if os.geteuid() == 0:
        assert stray_sandbox_processes(live.settings.sandbox.worker_uid, str(live.settings.state_dir), live.executor.worker_pids()) == []
    live.assert_healthy()


def test_memory_bomb_ends_out_of_memory(live: LiveExecutor) -> None:
    result = live.run("memory_bomb", strategy=pb.STRATEGY_FAST)
    assert result.outcome == pb.OUTCOME_OUT_OF_MEMORY, result
    assert result.error_code == "SANDBOX_OUT_OF_MEMORY"
    assert "MemoryError" in details(result).get("stderr_tail", "")
    live.assert_healthy()


def test_infinite_loop_ends_as_timeout(live: LiveExecutor) -> None:
    recycled = live.executor.status().recycled
    result = live.run("spin", strategy=pb.STRATEGY_FAST, timeout_ms=1500)
    assert result.outcome == pb.OUTCOME_TIMEOUT, result
    assert details(result)["signal"] == "SIGKILL"
    assert live.executor.status().recycled == recycled + 1
    live.assert_healthy()


def test_segfault_ends_as_crash_after_a_cpu_only_retry(live: LiveExecutor) -> None:
    result = live.run("segfault", strategy=pb.STRATEGY_FAST)
    assert result.outcome == pb.OUTCOME_CRASH, result
    d = details(result)
    assert d["signal"] == "SIGSEGV"
    assert d["retried_cpu_only"] == "true" and d["first_attempt"] == "CRASH SIGSEGV"
    assert "cpu_only=True" in d["stderr_tail"] and "Segmentation fault" in d["stderr_tail"]
    live.assert_healthy()


def test_huge_output_file_is_cut_by_the_size_limit(live: LiveExecutor) -> None:
    result = live.run("huge_file", strategy=pb.STRATEGY_FAST, params={"mb": 64})
    assert result.outcome == pb.OUTCOME_SANDBOX_VIOLATION, result
    assert result.error_code == "SANDBOX_FILE_SIZE_LIMIT"
    assert details(result)["errno"] == str(errno.EFBIG)
    live.assert_healthy()


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("forge_garbage_result", "not canonical"),
        ("forge_link_result", "missing or not a regular file"),
        ("forge_outside_result", "not a plain path inside"),
        ("forge_wrong_id", "is for job 'someone-else'"),
        ("forge_swapped_dir", "job dir cannot be opened safely"),
    ],
)
def test_malformed_results_are_rejected(live: LiveExecutor, task: str, reason: str, tmp_path: Path) -> None:
    result = live.run(task, strategy=pb.STRATEGY_FAST, output_dir=str(tmp_path / "dest"), params={"target": "/etc/passwd"})
    assert result.outcome == pb.OUTCOME_SANDBOX_VIOLATION, result
    assert reason in details(result)["violation"], result
    assert not (tmp_path / "dest" / "artifact.bin").exists()
    live.assert_healthy()


def test_rejection_keeps_the_worker(live: LiveExecutor) -> None:
    recycled = live.executor.status().recycled
    result = live.run("reject", strategy=pb.STRATEGY_FAST)
    assert result.outcome == pb.OUTCOME_REJECTED and result.error_code == "BLUEPRINT_UNKNOWN_OP", result
    unknown = live.run("no_such_task", strategy=pb.STRATEGY_FAST)
    assert unknown.outcome == pb.OUTCOME_REJECTED and unknown.error_code == "SANDBOX_UNKNOWN_TASK"
    bad_id = live.run("tiny_torch", job_id="../escape")
    assert bad_id.outcome == pb.OUTCOME_REJECTED and bad_id.error_code == "SANDBOX_BAD_JOB_ID"
    assert live.executor.status().recycled == recycled
    live.assert_healthy()


def test_emergency_job_uses_the_reserved_worker(live: LiveExecutor) -> None:
    status = live.executor.status()
    assert status.emergency_slot and status.slots == 2
    result = live.run("tiny_torch", strategy=pb.STRATEGY_EMERGENCY, emergency=True)
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    assert int(details(result)["rlimit_as"]) == 1536 * 1024 * 1024
    assert live.executor.status().recycled == status.recycled


def test_every_ended_job_reached_on_result(live: LiveExecutor) -> None:
    assert live.executor.status().jobs_run > 0
    outcomes = {outcome for _, outcome in live.ended}
    assert pb.OUTCOME_SUCCESS in outcomes
    assert len(live.ended) >= 10


def test_a_worker_killed_while_idle_is_replaced_before_dispatch(live: LiveExecutor, tmp_path: Path) -> None:
    """A worker SIGKILLed between jobs (the OOM killer, an operator) is noticed before the next job
    is handed to it: the job runs on a fresh worker and succeeds, nothing is called out of memory."""
    import signal

    live.assert_healthy()
    for pid in live.executor.worker_pids():
        os.kill(pid, signal.SIGKILL)
    # At once: before the event loop has reaped anything.
    result = live.run("tiny_torch", strategy=pb.STRATEGY_FAST, output_dir=str(tmp_path / "out"))
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    live.assert_healthy()
