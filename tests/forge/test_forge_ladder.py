"""The fallback ladder, tier deadlines, bounded work per blueprint and request controls, driven
through the service on the in-process executor (real compiles where a tier compiles)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import forge_tasks
import pytest
from forge_helpers import in_process_settings, request

from tezzeret.artifact.file import read_manifest
from tezzeret.bus import topics
from tezzeret.bus.base import Delivery
from tezzeret.forge.errors import BlueprintInvalid, BlueprintQuarantined, RequestInvalid, RiskRefused
from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.sandbox.inprocess import InProcessExecutor

pytestmark = pytest.mark.timeout(300)


async def _forge(tmp_path: Path, task: str, **overrides: object) -> Forge:
    settings = in_process_settings(tmp_path / "state", **overrides)
    forge_tasks.GATE.set()
    forge_tasks.CALLS.clear()
    return await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": f"forge_tasks:{task}"})).start()


async def test_a_tier_that_fails_falls_to_the_next_and_every_record_says_why(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "fast_fails_verification")
    events: list[pb.CompilationComplete] = []

    async def collect(d: Delivery) -> None:
        events.append(d.message)  # type: ignore[arg-type]

    forge.bus.subscribe(topics.KERNEL_READY, collect, group="test", consumer="t")
    try:
        sub = await forge.submit(request("mlp_512", strategy=pb.STRATEGY_FAST))
        job = await forge.wait(sub.job_id, timeout=120)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        result = job.result
        assert result.strategy_requested == pb.STRATEGY_FAST and result.strategy_used == pb.STRATEGY_EMERGENCY
        assert "FAST no entry passed verification" in result.fallback_reason
        view = forge.job(sub.job_id)
        assert (view["strategy_requested"], view["strategy_served"]) == ("FAST", "EMERGENCY")
        manifest, _, _ = read_manifest(await forge.artifact_file(result.artifact_id))
        assert manifest.strategy == pb.STRATEGY_EMERGENCY and manifest.strategy_requested == pb.STRATEGY_FAST
        assert "verification" in manifest.fallback_reason
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.1)
        assert events and events[0].strategy_requested == pb.STRATEGY_FAST and events[0].fallback_reason
        # Served at a lower tier is a success: no breaker counted it, the blueprint is not INVALID.
        assert not forge.breakers["kernel_validation"].snapshot()["last_failure"]
        assert forge.store.get_blueprint(job.digest).state == "COMPILED"
        # Asked again at FAST: the known failure is not paid twice; the EMERGENCY build answers.
        calls = len(forge_tasks.CALLS)
        again = await forge.submit(request("mlp_512", strategy=pb.STRATEGY_FAST))
        assert again.from_cache and again.artifact_id == result.artifact_id and len(forge_tasks.CALLS) == calls
        assert "FAST already failed" in forge.job(again.job_id)["strategy_reason"]
    finally:
        await forge.close(grace_s=10)


async def test_a_blueprint_failing_by_itself_is_quarantined_not_the_service(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "always_times_out", compilation={"max_blueprint_failures": 2})
    try:
        for attempt in range(2):
            sub = await forge.submit(request("residual_mlp_256", strategy=pb.STRATEGY_FAST))
            job = await forge.wait(sub.job_id, timeout=60)
            assert job.status is JobStatus.FAILED and job.result.outcome == pb.OUTCOME_TIMEOUT
            # The first walked the ladder down to EMERGENCY before it failed; its timeout put the forge
            # in conservative mode (a first failure may be the host's), which admits the next at EMERGENCY.
            tiers = [c.split(":")[1] for c in forge_tasks.CALLS if c.startswith(sub.job_id)]
            assert tiers == (["FAST", "EMERGENCY"] if attempt == 0 else ["EMERGENCY"])
        record = forge.store.get_blueprint(job.digest)
        assert record.quarantined and "failures of its own" in record.quarantine_reason
        # The breaker counted the first timeout only: the repeats are the blueprint's problem.
        assert forge.breakers["compilation_timeout"].snapshot()["consecutive_failures"] == 1
        with pytest.raises(BlueprintQuarantined, match="release"):
            await forge.submit(request("residual_mlp_256", strategy=pb.STRATEGY_EMERGENCY))
        # No automatic path submits it either.
        assert job.digest not in {r.digest for r in forge.store.unclaimed()}
        assert await forge.poller.scan_once() == 0
        released = await forge.release_blueprint(job.digest, "operator")
        assert released == {"blueprint": job.digest, "quarantined": False}
        assert (await forge.submit(request("residual_mlp_256", strategy=pb.STRATEGY_EMERGENCY))).job_id
    finally:
        await forge.close(grace_s=10)


async def test_request_controls_are_honoured(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "gated_compile", compilation={"default_strategy": "FAST"})
    try:
        with pytest.raises(RequestInvalid, match="builds for cpu-"):
            await forge.submit(request("mlp_512", strategy=pb.STRATEGY_UNSPECIFIED,
                                       options=pb.CompilationOptions(target_hardware="cuda-sm90")))
        with pytest.raises(BlueprintInvalid, match="adversarial"):
            await forge.submit(request("mlp_512", options=pb.CompilationOptions(risk_level=0.95)))
        forge.pipeline.pause()
        unset = await forge.submit(request("conv_pool_head_32", strategy=pb.STRATEGY_UNSPECIFIED))
        # compilation.default_strategy decides; one tier below it while the host is busy (another
        # test worker on the same cores counts as load).
        reason = forge.job(unset.job_id)["strategy_reason"]
        assert "default_strategy" in reason, reason
        assert (unset.strategy, reason.startswith("one below")) in {("FAST", False), ("EMERGENCY", True)}, reason
        small = await forge.submit(request("lora_adapter_1024", options=pb.CompilationOptions(memory_budget_mb=700)))
        job = forge.registry.get(small.job_id)
        assert forge.runner.worker_job(job, job.strategy, budget_ms=1000).memory_limit_mb == 700
        # timeout_ms caps the job: too little of it left to start a tier, the job ends TIMEOUT.
        quick = await forge.submit(request("mlp_512", timeout_ms=1, priority=pb.PRIORITY_STRATEGIC))
        forge.pipeline.resume()
        ended = await forge.wait(quick.job_id, timeout=60)
        assert ended.status is JobStatus.FAILED and ended.result.error_code == "JOB_DEADLINE"
        forge.pipeline.pause()  # the FAST compiles queued above are not what this test is about
        forge.conservative.trigger("compilation_timeout", "test")
        with pytest.raises(RiskRefused, match="conservative mode"):
            await forge.submit(request("rmsnorm_gated_mlp_768", options=pb.CompilationOptions(risk_level=0.5)))
    finally:
        await forge.close(grace_s=10)


async def test_emergency_priority_needs_the_emergency_role_on_every_path(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "gated_compile")
    forge.pipeline.pause()
    try:
        blueprint_msg = pb.BlueprintSubmitted(schema_version=SCHEMA_VERSION, blueprint=request("mlp_512").blueprint,
                                              priority=pb.PRIORITY_EMERGENCY)
        await forge.bus.publish(topics.BLUEPRINT_SUBMITTED, blueprint_msg, message_id="karn-em")
        req = request("residual_mlp_256", priority=pb.PRIORITY_EMERGENCY)
        await forge.bus.publish(topics.COMPILATION_REQUEST, req, message_id="oona-em")
        for _ in range(100):
            if len(forge.queue) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(j.priority for j in forge.queue) == [pb.PRIORITY_STRATEGIC, pb.PRIORITY_STRATEGIC]
    finally:
        await forge.close(grace_s=10)


async def test_memory_budget_holds_a_job_whose_limit_would_not_fit(tmp_path: Path) -> None:
    # Two slots, but memory for one STANDARD job (8 GiB) plus an EMERGENCY one (2 GiB) only.
    forge = await _forge(tmp_path, "held", compilation={"max_concurrent_jobs": 2},
                         sandbox={"training_reserved_cores": 0}, resources={"memory_budget_gb": 10})
    forge_tasks.GATE.clear()
    try:
        first = await forge.submit(request("mlp_512", strategy=pb.STRATEGY_STANDARD))
        second = await forge.submit(request("residual_mlp_256", strategy=pb.STRATEGY_STANDARD))
        for _ in range(100):
            if forge.registry.get(first.job_id).status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        waiting = forge.job(second.job_id)
        assert waiting["status"] == "QUEUED" and "resources.memory_budget_gb" in waiting["waiting_reason"]
        small = await forge.submit(request("swiglu_mlp_512", strategy=pb.STRATEGY_EMERGENCY, priority=pb.PRIORITY_STRATEGIC))
        for _ in range(100):  # 8 + 2 GiB fit: the EMERGENCY job runs beside the STANDARD one
            if forge.registry.get(small.job_id).status is not JobStatus.QUEUED:
                break
            await asyncio.sleep(0.05)
        assert forge.registry.get(small.job_id).status is not JobStatus.QUEUED
    finally:
        forge_tasks.GATE.set()
        forge.pipeline.pause()
        await forge.close(grace_s=1)


async def test_idle_recompilation_compares_each_artifact_with_its_own_tier(tmp_path: Path) -> None:
    from tezzeret.forge.idle import current_toolchains

    forge = await _forge(tmp_path, "gated_compile")
    try:
        sub = await forge.submit(request("mlp_512", strategy=pb.STRATEGY_EMERGENCY))
        assert (await forge.wait(sub.job_id, timeout=120)).status is JobStatus.SUCCEEDED
        # An up-to-date EMERGENCY artifact and no FAST one: nothing is outdated.
        assert forge.store.recompilation_candidates(current_toolchains()) == []
        stale = {**current_toolchains(), "EMERGENCY": "0" * 64}
        assert [c.reason for c in forge.store.recompilation_candidates(stale)] == ["outdated toolchain"]
    finally:
        await forge.close(grace_s=5)


async def test_an_emergency_deadline_bounds_the_job(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "gated_compile")
    forge_tasks.GATE.clear()
    forge.pipeline.pause()
    try:
        msg = pb.EmergencyCompile(schema_version=SCHEMA_VERSION, request_id="em-deadline",
                                  blueprint=request("mlp_512").blueprint, deadline_ms=1000)
        ack = await forge.handle_emergency(msg)
        assert ack.accepted
        job = next(j for j in forge.registry.recent(10) if "em-deadline" in j.emergency_requests)
        await asyncio.sleep(1.2)  # the deadline passes while it waits
        forge.pipeline.resume()
        ended = await forge.wait(job.job_id, timeout=60)
        assert ended.status is JobStatus.FAILED and ended.result.error_code == "JOB_DEADLINE"
    finally:
        forge_tasks.GATE.set()
        await forge.close(grace_s=5)
