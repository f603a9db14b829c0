"""The CPU cap for compile workers under contention: a real cgroup, real spinning processes.

Skipped, with the reason, where this machine cannot make a cgroup (not root, read-only cgroup
file system); the CI machine can.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sandbox_harness import LiveExecutor, sandbox_settings

from tezzeret.leyline import pb
from tezzeret.sandbox import throttle

SPIN = "while True: pass"


@pytest.fixture
def group() -> Iterator[throttle.WorkerCgroup]:
    made, why = throttle.WorkerCgroup.create(f"tezzeret-test-{uuid.uuid4().hex[:8]}", 20_000)
    if made is None:
        pytest.skip(f"no cgroup CPU controller here: {why}")
    yield made
    made.remove()


def _spinner(group: throttle.WorkerCgroup | None = None) -> subprocess.Popen[bytes]:
    files = group.procs_files() if group else None
    return subprocess.Popen([sys.executable, "-c", SPIN],
                            preexec_fn=(lambda: throttle.join(files)) if files else None)


def _cores_used(proc: subprocess.Popen[bytes], seconds: float = 1.5) -> float:
    p = psutil.Process(proc.pid)
    before = sum(p.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(p.cpu_times()[:2]) - before) / seconds


def test_the_cap_limits_a_process_in_the_group_and_lifting_it_frees_it(group: throttle.WorkerCgroup) -> None:
    proc = _spinner(group)
    try:
        time.sleep(0.3)
        before = group.usage_s()
        group.set_quota(0.2)
        capped = _cores_used(proc)
        assert capped <= 0.3, capped
        group.set_quota(None)
        free = _cores_used(proc)
        assert free > 1.5 * capped, (free, capped)
        # The group counts its members' CPU (what the throttle subtracts from the host's).
        assert group.usage_s() - before >= 0.5 * (capped + free) * 1.5
    finally:
        proc.kill()
        proc.wait()


def _host_busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by everything on this host right now (a shared CI runner may not be idle)."""
    before = throttle.host_busy_s()
    time.sleep(seconds)
    return (throttle.host_busy_s() - before) / seconds


async def _until(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def test_the_throttle_caps_while_others_are_busy_and_lifts_after(group: throttle.WorkerCgroup) -> None:
    async def scenario() -> None:
        # The idle-host half needs an idle host; on a busy one the cap rightly engages.
        background = _host_busy_cores()
        idle_host = background < 0.25
        gate = throttle.ContentionThrottle(group, quota_cores=0.25, threshold_cores=0.5, interval_s=0.5)
        gate.start()
        # The workers' own use is never counted as contention: our spinner inside the group
        # adds nothing to `others_cores`, so an idle host leaves the workers alone.
        inside = _spinner(group)
        try:
            spinner = psutil.Process(inside.pid)
            host_before, spun_before = throttle.host_busy_s(), sum(spinner.cpu_times()[:2])
            await asyncio.sleep(1.6)
            # What everything but our spinner used over the same window (a shared host's load
            # moves: the background measured before is no bound for now).
            others_now = (throttle.host_busy_s() - host_before - (sum(spinner.cpu_times()[:2]) - spun_before)) / 1.6
            assert gate.others_cores < others_now + 0.5, (others_now, gate.snapshot())
            # Idle means idle over this window too: another test run on the host may have started.
            idle_host = idle_host and others_now < 0.25
            if idle_host:
                assert not gate.capped, (background, gate.snapshot())
            outside = _spinner()
            try:
                assert await _until(lambda: gate.capped, 6), gate.snapshot()
                assert gate.rate(running=1) == 0.25 and gate.rate(running=2) == 0.125
                quota = group.quota_dir / ("cpu.cfs_quota_us" if group.version == 1 else "cpu.max")
                assert quota.read_text().split()[0] == "5000"
            finally:
                outside.kill()
                outside.wait()
            if idle_host:
                host_before, spun_before = throttle.host_busy_s(), sum(spinner.cpu_times()[:2])
                await asyncio.sleep(1.0)
                others_now = throttle.host_busy_s() - host_before - (sum(spinner.cpu_times()[:2]) - spun_before)
                idle_host = others_now < 0.25
            if idle_host:
                assert await _until(lambda: not gate.capped, 8), gate.snapshot()
                assert gate.rate(running=1) == 1.0
        finally:
            # Whatever failed above, no spinner outlives the test (a leaked one is a busy core
            # for every test after it).
            inside.kill()
            inside.wait()
            await gate.stop()
        assert not group.quota_dir.exists()

    asyncio.run(scenario())


def test_a_capped_job_times_out_on_its_allowed_share_not_on_wall_time(tmp_path: Path) -> None:
    settings = sandbox_settings(tmp_path, sandbox={"contended_cpu_quota": 0.25, "contended_threshold_cores": 0.5})
    live = LiveExecutor(settings, {"spin": "sandbox_payloads:spin", "tiny_torch": "sandbox_payloads:tiny_torch"})
    outside = _spinner()
    try:
        status = live.executor.status().throttle
        if "off" in status:
            pytest.skip(f"no CPU cap here: {status['off']}")
        assert live.call(_until(lambda: live.executor.status().throttle["capped"], 8))
        started = time.monotonic()
        result = live.run("spin", strategy=pb.STRATEGY_FAST, timeout_ms=1500)
        took = time.monotonic() - started
        assert result.outcome == pb.OUTCOME_TIMEOUT, result
        assert "under the CPU cap" in result.error, result.error
        # 1.5 s of a quarter core is about 6 s of wall time.
        assert took >= 3.0, took
        # The emergency worker is never capped: its limit is plain wall time.
        started = time.monotonic()
        result = live.run("spin", emergency=True, strategy=pb.STRATEGY_EMERGENCY, timeout_ms=1500)
        assert result.outcome == pb.OUTCOME_TIMEOUT and "CPU cap" not in result.error, result.error
        live.assert_healthy()
    finally:
        outside.kill()
        outside.wait()
        live.close()
