"""Memory stays bounded and nothing accepted vanishes: the service builds the TTL manager and sweeps
it on its interval, expires jobs that waited too long (journaled, audited), applies conservative
mode's cache budget, gives automatic work's slot to user jobs, keeps a job's fields across a
restart, and never lets an audit write that fails fail the request."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import forge_tasks
import pytest
from forge_helpers import in_process_settings, request

from tezzeret.forge.audit import AuditLog, read_audit
from tezzeret.forge.jobs import JobStatus, priority_name
from tezzeret.forge.service import Forge
from tezzeret.leyline import pb
from tezzeret.sandbox.inprocess import InProcessExecutor

pytestmark = pytest.mark.timeout(300)


async def _start(settings, task: str = "gated_compile") -> Forge:  # type: ignore[no-untyped-def]
    return await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": f"forge_tasks:{task}"})).start()


async def test_the_service_sweeps_every_map_and_expires_the_queue(tmp_path: Path) -> None:
    settings = in_process_settings(tmp_path / "state", memory_management={
        "cleanup_interval_seconds": 0.5, "job_ttl_seconds": 1, "cache_ttl_seconds": 1, "queue_ttl_seconds": 1,
    })
    forge_tasks.GATE.set()
    forge = await _start(settings)
    try:
        done = await forge.submit(request("mlp_512"))
        assert (await forge.wait(done.job_id, timeout=120)).status is JobStatus.SUCCEEDED
        assert forge.cache.stats().entries == 1
        forge.pipeline.pause()
        waiting = await forge.submit(request("residual_mlp_256"))
        await asyncio.sleep(3.0)  # past every TTL, and past a sweep or two of the housekeeping loop
        assert forge.registry.get(done.job_id) is None, "a finished job outlived job_ttl_seconds"
        assert forge.cache.stats().entries == 0, "an L1 result outlived cache_ttl_seconds"
        # The queued job ended FAILED (EXPIRED), durably: the journal has its result (the registry
        # may already have forgotten it too, its own TTL being as short).
        assert len(forge.queue) == 0 and not forge.registry.unfinished()
        assert forge.journal.state().failures[waiting.artifact_id].error_code == "EXPIRED"
        assert any(r["action"] == "job_expired" for r in read_audit(settings.audit_log_path))
    finally:
        await forge.close(grace_s=5)


async def test_conservative_mode_halves_the_cache_budget_and_the_gpu_share(tmp_path: Path) -> None:
    forge_tasks.GATE.set()
    forge = await _start(in_process_settings(tmp_path / "state"))
    try:
        full = forge.memory["compilation_cache"].max_entries
        job = forge.intake.prepare(request("mlp_512"), system_load=0, conservative_downgrade=None)
        assert dict((kv.key, kv.value) for kv in forge.runner.worker_job(job, job.strategy, budget_ms=1).params)["gpu_fraction"] == "0.25"
        forge.conservative.trigger("compilation_timeout", "test")
        for _ in range(80):  # the monitor loop applies it on its next sample
            if forge.memory.budget_factor == 0.5:
                break
            await asyncio.sleep(0.1)
        assert forge.memory["compilation_cache"].max_entries == full // 2
        params = dict((kv.key, kv.value) for kv in forge.runner.worker_job(job, job.strategy, budget_ms=1).params)
        assert params["gpu_fraction"] == "0.15" and params["gpu_memory_gb"] == "16"
        # No GPU here: health says it is absent, and its breaker stays CLOSED.
        report = forge.health()
        assert report.gpu == {"present": False} and report.breakers["gpu_utilization"] == "CLOSED"
    finally:
        await forge.close(grace_s=5)


async def test_automatic_work_gives_its_slot_to_a_user_job(tmp_path: Path) -> None:
    forge_tasks.GATE.clear()
    forge = await _start(in_process_settings(tmp_path / "state"))
    try:
        polled = await forge.submit(request("swiglu_mlp_512"), "urza")
        for _ in range(100):
            if forge.registry.get(polled.job_id).status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        user = await forge.submit(request("mlp_512"))
        for _ in range(100):
            if forge.registry.get(user.job_id).status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        # The user job took the one slot; the polled job is back in line, not failed.
        assert forge.registry.get(user.job_id).status is JobStatus.RUNNING
        assert forge.registry.get(polled.job_id).status is JobStatus.QUEUED
        forge_tasks.GATE.set()
        assert (await forge.wait(user.job_id, timeout=120)).status is JobStatus.SUCCEEDED
        assert (await forge.wait(polled.job_id, timeout=120)).status is JobStatus.SUCCEEDED
    finally:
        forge_tasks.GATE.set()
        await forge.close(grace_s=5)


async def test_a_restarted_job_keeps_its_fields(tmp_path: Path) -> None:
    settings = in_process_settings(tmp_path / "state", emergency={"reserved_worker": False})
    forge_tasks.GATE.clear()
    first = await _start(settings)
    first.pipeline.pause()
    sub = await first.submit(request("conv_pool_head_32", priority=pb.PRIORITY_STRATEGIC, requested_by="alice"), "karn")
    before = first.job(sub.job_id)
    await first.close(grace_s=0)
    second = await _start(settings)
    second.pipeline.pause()
    try:
        after = second.job(sub.job_id)
        for key in ("priority", "request", "source", "strategy", "strategy_reason", "requested_by", "artifact_id",
                    "blueprint_name", "sequence"):
            assert after[key] == before[key], key
        assert abs(after["submitted_at"] - before["submitted_at"]) < 1.0
        assert priority_name(second.registry.get(sub.job_id).priority) == "STRATEGIC"
    finally:
        forge_tasks.GATE.set()
        await second.close(grace_s=0)


async def test_every_submission_and_outcome_is_audited(tmp_path: Path) -> None:
    settings = in_process_settings(tmp_path / "state")
    forge_tasks.GATE.set()
    forge = await _start(settings)
    try:
        for source in ("karn", "urza", "idle"):
            await forge.submit(request("mlp_512"), source)
        job = await forge.wait(forge.registry.recent(10)[-1].job_id, timeout=120)
        assert job.status is JobStatus.SUCCEEDED
    finally:
        await forge.close(grace_s=5)
    records = read_audit(settings.audit_log_path)
    actions = [r["action"] for r in records]
    assert {"submit(karn)", "submit(urza)", "submit(idle)"} <= set(actions)
    assert [r["outcome"] for r in records if r["action"].startswith("submit")] == ["queued", "joined", "joined"]
    ended = [r for r in records if r["action"] == "job_ended(karn)"]
    assert ended and ended[0]["outcome"] == "SUCCESS" and ended[0]["strategy_served"] == "EMERGENCY"


def test_an_audit_write_that_fails_is_spooled_not_raised(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    good = audit._fd
    audit._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as on a full disk
    for i in range(3):
        audit.record(requestor="r", action=f"a{i}", outcome="200")
    status = audit.status()
    assert status["failing"] and status["spooled"] == 3 and "ENOSPC" in status["last_error"] or "space" in status["last_error"]
    os.close(audit._fd)
    audit._fd = good
    audit.flush()
    assert [r["action"] for r in read_audit(tmp_path / "audit.jsonl")] == ["a0", "a1", "a2"]
    assert not audit.status()["failing"]
    audit.spool_limit = 2
    audit._fd = os.open("/dev/full", os.O_WRONLY)
    for i in range(5):
        audit.record(requestor="r", action=f"b{i}", outcome="200")
    os.close(audit._fd)
    audit._fd = good
    audit.flush()
    tail = read_audit(tmp_path / "audit.jsonl")[3:]
    assert tail[0]["action"] == "audit_records_dropped" and tail[0]["count"] == 3
    assert [r["action"] for r in tail[1:]] == ["b3", "b4"]
    audit.close()
