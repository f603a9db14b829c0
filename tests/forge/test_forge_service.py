"""The Forge in process: the whole path of a submission with real parts (sandbox workers, WAL,
store, signing, in-process bus), at the EMERGENCY tier (no Inductor) to keep the suite fast."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from forge_helpers import SMALL, blueprint, forge_settings, request

from tezzeret.bus import topics
from tezzeret.bus.base import Delivery
from tezzeret.artifact.file import read_manifest
from tezzeret.forge.errors import BlueprintInvalid, IntakeClosed
from tezzeret.forge.jobs import JobStatus, priority_name
from tezzeret.forge.service import Forge
from tezzeret.leyline import SCHEMA_VERSION, encode, pb
from tezzeret.store import verify_signature

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def forge(tmp_path_factory: pytest.TempPathFactory):
    # One forge for the tests that do not need a fresh state: worker start-up (torch import in
    # each pre-warmed worker) dominates this suite's time on a small machine.
    f = Forge(forge_settings(tmp_path_factory.mktemp("forge") / "state"))
    await f.start()
    try:
        yield f
    finally:
        await f.close(grace_s=5)


async def test_submission_path_end_to_end(forge: Forge) -> None:
    events: dict[str, list[Delivery]] = {topics.KERNEL_READY: [], topics.KERNELS_CATALOG: []}

    async def collect(d: Delivery) -> None:
        events[d.topic].append(d)

    for topic in events:
        forge.bus.subscribe(topic, collect, group="test", consumer="t1")
    # Subscriptions made after start need the bus to pick them up; the in-process bus does.
    sub = await forge.submit(request("mlp_512"))
    assert sub.status == "QUEUED" and not sub.from_cache and sub.strategy == "EMERGENCY"
    job = await forge.wait(sub.job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)

    # Stored, signed by the service key, PENDING_BENCHMARKING, and the blueprint moved on.
    rec = forge.store.get_artifact(sub.artifact_id)
    assert rec.status == "PENDING_BENCHMARKING"
    manifest, signature, manifest_bytes = read_manifest(forge.store.artifact_path(sub.artifact_id))
    assert manifest.artifact_id == sub.artifact_id
    assert verify_signature(forge.key.public_key_bytes, manifest_bytes, signature)
    assert forge.store.get_blueprint(sub.blueprint_digest).state == "COMPILED"
    # Journaled as finished: a restart will not build it again.
    assert forge.journal.is_completed(sub.artifact_id)

    # Announced on the bus.
    for _ in range(50):
        if events[topics.KERNEL_READY] and events[topics.KERNELS_CATALOG]:
            break
        await asyncio.sleep(0.1)
    ready = events[topics.KERNEL_READY][0].message
    assert ready.artifact_id == sub.artifact_id and ready.status == pb.OUTCOME_SUCCESS
    catalog = events[topics.KERNELS_CATALOG][0].message
    assert catalog.status == pb.KERNEL_PENDING_BENCHMARKING and catalog.checksum == manifest.payload_sha256

    # The same blueprint again: answered from the store, nothing journaled or compiled.
    again = await forge.submit(request("mlp_512"))
    assert again.from_cache and again.status == "FROM_CACHE" and again.artifact_id == sub.artifact_id
    assert forge.job(again.job_id)["result"]["outcome"] == "OUTCOME_FROM_CACHE"
    view = forge.job(sub.job_id)
    assert view["request"]["strategy"] == "STRATEGY_EMERGENCY" and view["request"]["blueprint_id"] == sub.blueprint_digest
    assert view["result"]["outcome"] == "OUTCOME_SUCCESS" and view["result"]["artifact_id"] == sub.artifact_id


async def test_duplicates_join_one_compile(forge: Forge) -> None:
    subs = await asyncio.gather(*(forge.submit(request("residual_mlp_256")) for _ in range(25)))
    job_ids = {s.job_id for s in subs}
    assert len(job_ids) == 1 and sum(s.joined for s in subs) == 24
    job = await forge.wait(subs[0].job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED, job.error
    attempts = forge.store.get_blueprint(subs[0].blueprint_digest).compilation_attempts
    assert attempts == 1


async def test_invalid_blueprint_changes_nothing(forge: Forge) -> None:
    ir = blueprint("mlp_512")
    ir.nodes[0].inputs[0] = "no_such_tensor"
    before = forge.journal.state()
    stored = len(forge.store.list_blueprints())
    with pytest.raises(BlueprintInvalid) as exc:
        await forge.submit(pb.CompilationRequest(schema_version=SCHEMA_VERSION, blueprint=ir))
    err = exc.value.to_dict()
    assert err["code"] == "BLUEPRINT_INVALID" and err["reason"] == "DANGLING_INPUT"
    assert "node" in err or "field" in err
    after = forge.journal.state()
    assert len(after.pending) == len(before.pending) and len(forge.store.list_blueprints()) == stored



async def test_emergency_ack_then_completion_on_reply_stream(forge: Forge) -> None:
    replies: list[pb.CompilationComplete] = []

    async def on_reply(d: Delivery) -> None:
        if isinstance(d.message, pb.CompilationComplete):
            replies.append(d.message)

    forge.bus.subscribe(topics.EMERGENCY_REPLY, on_reply, group="tamiyo", consumer="t")
    msg = pb.EmergencyCompile(
        schema_version=SCHEMA_VERSION, request_id="em-1", blueprint=blueprint("swiglu_mlp_512"), requested_by="tamiyo"
    )
    ack = await forge.handle_emergency(msg)
    assert ack.accepted and ack.request_id == "em-1" and ack.reason == "queued"
    # At-least-once delivery: the same request id gets the same answer and no second job.
    assert (await forge.handle_emergency(msg)) == ack
    for _ in range(600):
        if replies:
            break
        await asyncio.sleep(0.1)
    assert replies and replies[0].request_id == "em-1" and replies[0].status == pb.OUTCOME_SUCCESS
    # A new request for the same blueprint is answered from cache at once.
    ack2 = await forge.handle_emergency(
        pb.EmergencyCompile(schema_version=SCHEMA_VERSION, request_id="em-2", blueprint=blueprint("swiglu_mlp_512"))
    )
    assert ack2.accepted and ack2.reason == "from_cache" and ack2.estimate_ms == 0


async def test_bus_intake_topics(forge: Forge) -> None:
    """Oona in: `compilation.request` compiles, `validation.kernel.characterized` moves the kernel's
    status, `compilation.blueprint.submitted` (Karn) is queued at the policy's tier."""
    req = request("gated_token_mixer_128", request_id="oona-1")
    await forge.bus.publish(topics.COMPILATION_REQUEST, req, message_id="oona-1")
    job = None
    for _ in range(300):
        job = next((j for j in forge.registry.recent(1000) if j.request_id == "oona-1"), None)
        if job is not None and job.status.finished:
            break
        await asyncio.sleep(0.1)
    assert job is not None and job.source == "oona" and job.status is JobStatus.SUCCEEDED, job
    await forge.bus.publish(
        topics.KERNEL_CHARACTERIZED,
        pb.KernelCharacterized(schema_version=SCHEMA_VERSION, artifact_id=job.artifact_id, status=pb.KERNEL_VALIDATED, reason="urabrask: ok"),
        message_id="char-1",
    )
    for _ in range(100):
        if forge.store.get_artifact(job.artifact_id).status == "VALIDATED":
            break
        await asyncio.sleep(0.05)
    assert forge.store.get_artifact(job.artifact_id).status == "VALIDATED"

    forge.pipeline.pause()  # Karn's blueprint would compile at STANDARD+: only check it is queued
    try:
        await forge.bus.publish(
            topics.BLUEPRINT_SUBMITTED,
            pb.BlueprintSubmitted(schema_version=SCHEMA_VERSION, blueprint=blueprint("spatial_attention_64"), priority=pb.PRIORITY_STRATEGIC),
            message_id="karn-1",
        )
        karn = None
        for _ in range(100):
            karn = next((j for j in forge.registry.recent(1000) if j.source == "karn"), None)
            if karn is not None:
                break
            await asyncio.sleep(0.05)
        assert karn is not None and priority_name(karn.priority) == "STRATEGIC" and karn.status is JobStatus.QUEUED
        forge.queue.remove(karn.job_id)
    finally:
        forge.pipeline.resume()


async def test_restart_requeues_in_order_and_never_rebuilds(tmp_path: Path) -> None:
    # One worker, no reserved emergency slot: two start-ups, each importing torch once.
    settings = forge_settings(tmp_path / "state", emergency={"reserved_worker": False})
    first = Forge(settings)
    await first.start()
    first.pipeline.pause()  # nothing runs: everything stays journaled
    subs = [await first.submit(request(name)) for name in SMALL[:3]]
    await first.close(grace_s=0)

    second = Forge(settings)
    await second.start()
    try:
        assert second.last_recovery["requeued_jobs"] == 3
        for s in subs:
            job = await second.wait(s.job_id, timeout=120)
            assert job.status is JobStatus.SUCCEEDED, job.error
        # Dispatch starts with the forge, so the queue may already be draining when start()
        # returns: the order shows in when each job started on the one worker.
        started = sorted(subs, key=lambda s: second.registry.get(s.job_id).started_at)
        assert [s.job_id for s in started] == [s.job_id for s in subs]
        finished = sorted(subs, key=lambda s: second.registry.get(s.job_id).finished_at)
        assert [s.job_id for s in finished] == [s.job_id for s in subs]
        # Nothing left to recover, and each blueprint was compiled exactly once.
        assert not second.journal.state().pending
        for s in subs:
            assert second.store.get_blueprint(s.blueprint_digest).compilation_attempts == 1
        again = await second.submit(request(SMALL[0]))
        assert again.from_cache
    finally:
        await second.close(grace_s=5)


async def test_polling_and_idle_submit_without_running(forge: Forge) -> None:
    """Urza polling submits stored-but-unrequested blueprints at NORMAL with the policy's tier;
    idle recompilation submits §3.5 candidates at BACKGROUND. The pipeline is paused so nothing
    compiles at those (slow) tiers here; what is checked is what gets queued."""
    from tezzeret.blueprint import digest

    # Near the end on the shared forge: it pauses the pipeline and enters conservative mode.
    forge.settings.compilation.idle_recompilation = True
    try:
        forge.pipeline.pause()
        ir = blueprint("temporal_conv1d_128")
        d = digest(ir)
        forge.store.put_blueprint(encode(ir), d, source="karn", state="GENERATED")
        assert await forge.poller.scan_once() == 1
        (queued,) = forge.queue.ordered()
        job = forge.registry.get(queued.job_id)
        assert job.source == "urza" and priority_name(job.priority) == "NORMAL" and job.strategy in ("STANDARD", "FAST", "AGGRESSIVE")
        assert await forge.poller.scan_once() == 0  # already queued: not submitted twice

        # Idle work only when nothing waits.
        assert forge.idle.allowed() is False
        forge.queue.remove(queued.job_id)
        forge.store.transition(d, "COMPILING", actor="t")
        forge.store.transition(d, "COMPILED", actor="t")
        forge.store.set_tamiyo_interest(d, 0.95)
        # The background loop may have taken the step already; either way exactly one idle job.
        job_id = forge.idle._current or await forge.idle.step()
        assert job_id is not None and forge.idle.submitted == 1
        idle_job = forge.registry.get(job_id)
        assert priority_name(idle_job.priority) == "BACKGROUND" and idle_job.strategy == "AGGRESSIVE" and idle_job.source == "idle"
        # Conservative mode forbids idle work and caps what is submitted.
        forge.conservative.trigger("compilation_timeout", "test")
        assert not forge.idle.allowed()
        assert forge.health().status in ("DEGRADED", "UNHEALTHY")
    finally:
        forge.settings.compilation.idle_recompilation = False
        # Nothing submitted here may compile (AGGRESSIVE would take minutes): drop it, resume.
        for waiting in forge.queue.ordered():
            forge.queue.remove(waiting.job_id)
        forge.pipeline.resume()


async def test_store_breaker_open_holds_dispatch(forge: Forge) -> None:
    breaker = forge.breakers["store"]
    for _ in range(breaker.failure_threshold):
        breaker.record_failure("test: Urza unavailable")
    sub = await forge.submit(request("conv_pool_head_32"))
    await asyncio.sleep(1.5)
    assert forge.job(sub.job_id)["status"] == "QUEUED"
    assert "dispatch held: store breaker OPEN" in forge.health().reasons
    breaker.reset()
    job = await forge.wait(sub.job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED, job.error


async def test_drain_refuses_new_work(forge: Forge) -> None:
    """Last on the shared forge: draining is one-way."""
    forge.drain()
    with pytest.raises(IntakeClosed):
        await forge.submit(request("mlp_512"))
    ack = await forge.handle_emergency(pb.EmergencyCompile(request_id="em-x", blueprint=blueprint("mlp_512")))
    assert not ack.accepted and "INTAKE_CLOSED" in ack.reason
    report = forge.health()
    assert report.status in ("DEGRADED", "UNHEALTHY") and "draining: intake is closed" in report.reasons
