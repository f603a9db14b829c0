"""Running one job: claim → sandbox → outcome to breakers → sign → WAL BEGIN → store → WAL COMMIT
→ journal → publish.

Owns: the steps after a job leaves the queue, in the order upstream §1.4 requires (the WAL
transaction opens before the store write and commits after the store acknowledges, so a crash in
between is visible to recovery), and the mapping of a job's outcome onto the breakers and
conservative-mode triggers. The signing key stays in this process: the worker only ever sees the
blueprint and its job directory. Must never compile here, and never let one job's failure escape
as an exception (a failure is a result, recorded in the journal and the store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tezzeret import metrics
from tezzeret.forge.intake import Prepared
from tezzeret.forge.jobs import JobStatus, JobView
from tezzeret.forge.publish import completion_event
from tezzeret.forge.strategy import name_of
from tezzeret.leyline import SCHEMA_VERSION, encode, pb

if TYPE_CHECKING:
    from tezzeret.forge.service import Forge

log = logging.getLogger(__name__)

# Worker outcomes that are the blueprint's fault, not the forge's: no retry, blueprint INVALID.
BLUEPRINT_FAULTS = (pb.OUTCOME_REJECTED,)


def worker_job(forge: "Forge", p: Prepared, job: JobView, *, cpu_only: bool) -> pb.WorkerJob:
    s = forge.settings
    eff = forge.conservative.effective()
    strategy = name_of(p.strategy)
    out_dir = forge.jobs_dir / job.job_id
    return pb.WorkerJob(
        schema_version=SCHEMA_VERSION,
        job_id=job.job_id,
        task="compile",
        blueprint=encode(p.ir),
        strategy=p.strategy,
        batch_sizes=list(p.request.options.batch_sizes),
        output_dir=str(out_dir),
        memory_limit_mb=s.resources.per_job_memory_limits.for_strategy(strategy),
        timeout_ms=eff.timeout_ms(strategy),
        cpu_only=cpu_only,
    )


def feed_breakers(forge: "Forge", outcome: int, detail: str) -> bool:
    """Record the outcome on the breakers; returns True when it triggered conservative mode."""
    b = forge.breakers
    triggered = False
    if outcome == pb.OUTCOME_SUCCESS:
        b["compilation_timeout"].record_success()
        b["kernel_validation"].record_success()
        b["gpu_memory"].record_success()
    elif outcome == pb.OUTCOME_TIMEOUT:
        b["compilation_timeout"].record_failure(detail)
        triggered = forge.conservative.trigger("compilation_timeout", detail)
    elif outcome == pb.OUTCOME_REJECTED:
        # A verification (parity) failure: the kernel is wrong, count it for kernel_validation.
        b["kernel_validation"].record_failure(detail)
    elif outcome == pb.OUTCOME_OUT_OF_MEMORY:
        b["gpu_memory"].record_failure(detail)
        triggered = forge.conservative.trigger("memory_pressure", detail)
    elif outcome in (pb.OUTCOME_CRASH, pb.OUTCOME_SANDBOX_VIOLATION):
        triggered = forge.conservative.trigger("torch_crash", detail)
    return triggered


async def run(forge: "Forge", p: Prepared, job: JobView, *, emergency: bool) -> None:
    job.status = JobStatus.RUNNING
    job.started_at = time.time()
    conservative_before = forge.conservative.active
    await forge.journal.started_async(job.job_id)
    claimed = await asyncio.to_thread(forge.store.claim, p.digest, forge.instance_id)
    if not claimed:
        # Already COMPILED / VALIDATED (another strategy's artifact) or INVALID: the artifact id is
        # new, so compile anyway; the claim protects only the first compile of a fresh blueprint.
        log.debug("blueprint %s not claimable (state moved on); compiling %s anyway", p.digest, p.artifact_id)
    eff = forge.conservative.effective()
    wjob = worker_job(forge, p, job, cpu_only=eff.cpu_only_requested)
    Path(wjob.output_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    wres: pb.WorkerResult = await forge.sandbox.run(wjob, emergency=emergency)
    wall_ms = (time.monotonic() - t0) * 1000
    try:
        forge.cache.record_l3_details(wres.details)
    except ValueError:
        pass
    detail = f"{job.blueprint_name} {name_of(p.strategy)}: {wres.error_code or ''} {wres.error or ''}".strip()
    triggered = feed_breakers(forge, wres.outcome, detail)
    result = pb.CompilationResult(
        schema_version=SCHEMA_VERSION,
        request_id=p.request.request_id,
        job_id=job.job_id,
        outcome=wres.outcome,
        artifact_id=p.artifact_id,
        blueprint_digest=p.digest,
        strategy_used=p.strategy,
        compilation_time_ms=wres.compile_ms or wall_ms,
        peak_rss_bytes=wres.peak_rss_bytes,
        conservative_mode=conservative_before,
        conservative_mode_triggered=triggered,
    )
    manifest: pb.CompiledKernelArtifact | None = None
    if wres.outcome == pb.OUTCOME_SUCCESS:
        try:
            manifest = await persist(forge, p, job, wres, result, claimed)
        except Exception as exc:  # noqa: BLE001 - recorded as this job's failure
            log.exception("persisting %s failed", p.artifact_id)
            result.outcome = pb.OUTCOME_INTERNAL_ERROR
            result.error = f"{type(exc).__name__}: {exc}"
            result.error_code = getattr(exc, "code", "PERSIST_FAILED")
            forge.breakers["store"].record_failure(result.error)
    else:
        result.error = wres.error or pb.JobOutcome.Name(wres.outcome)
        result.error_code = wres.error_code or pb.JobOutcome.Name(wres.outcome)
        for kv in wres.details:
            if kv.key == "exit_status" and kv.value.lstrip("-").isdigit():
                result.exit_status = int(kv.value)
            elif kv.key == "signal":
                result.signal = kv.value
            elif kv.key == "stderr_tail":
                result.stderr_tail = kv.value
    result.success = result.outcome == pb.OUTCOME_SUCCESS
    if result.success:
        await forge.journal.finished_async(job.job_id, result)
    else:
        await forge.journal.failed_async(job.job_id, result)
    await asyncio.to_thread(_record_attempt, forge, p, result, manifest, claimed)
    status_label = name_of(p.strategy)
    metrics.COMPILATION_DURATION_MS.labels(
        strategy=status_label,
        status=pb.JobOutcome.Name(result.outcome).removeprefix("OUTCOME_"),
        conservative_mode=str(conservative_before).lower(),
    ).observe(result.compilation_time_ms)
    metrics.JOBS.labels(outcome=pb.JobOutcome.Name(result.outcome).removeprefix("OUTCOME_")).inc()
    if emergency or p.strategy == pb.STRATEGY_EMERGENCY:
        forge.note_emergency_duration(wall_ms)
    job.result = result
    job.error = result.error or None
    job.error_code = result.error_code or None
    forge.registry.finish(job, JobStatus.SUCCEEDED if result.success else JobStatus.FAILED)
    forge.cleanup_job_dir(job.job_id)
    await forge.publisher.artifact_ready(
        completion_event(request_id=p.request.request_id, blueprint_id=p.digest, result=result, manifest=manifest),
        manifest,
    )


async def persist(
    forge: "Forge", p: Prepared, job: JobView, wres: pb.WorkerResult, result: pb.CompilationResult, claimed: bool
) -> pb.CompiledKernelArtifact:
    """Sign, then WAL BEGIN → store → WAL COMMIT (upstream §1.4, the reversed order)."""
    from tezzeret.compile.artifact import attach_signature, read_manifest

    path = Path(wres.artifact_path)
    manifest, _old_sig, manifest_bytes = await asyncio.to_thread(read_manifest, path)
    if manifest.artifact_id != p.artifact_id:
        raise RuntimeError(
            f"the worker built artifact {manifest.artifact_id!r} but the job expected {p.artifact_id!r}"
        )
    signature = forge.key.sign(manifest_bytes)
    await asyncio.to_thread(attach_signature, path, signature)
    context = pb.ExecutionContext(
        schema_version=SCHEMA_VERSION,
        model_hash=p.digest,
        toolchain_version=manifest.toolchain_hash,
        training_run_id=p.request.request_id,
        hardware_profile=manifest.target,
        operation="COMPILATION_CHECKPOINT",
    )

    def transaction() -> Any:
        # The intent is durable before Urza is written, so a crash between the two leaves a record.
        txn = forge.wal.begin(context, durable=True)
        try:
            txn.data(encode(result))
            record = forge.store.put_artifact(manifest, path, signature, public_key=forge.key.public_key_bytes)
        except BaseException:
            txn.abort()
            raise
        txn.commit()
        return record

    record = await asyncio.to_thread(transaction)
    forge.breakers["store"].record_success()
    result.artifact_ref = f"/v1/artifacts/{p.artifact_id}/download"
    result.payload_sha256 = record.file_sha256
    if claimed:
        try:
            await asyncio.to_thread(
                forge.store.transition, p.digest, "COMPILED", expect_from="COMPILING", actor=forge.instance_id
            )
        except Exception as exc:  # noqa: BLE001 - lifecycle bookkeeping must not undo a stored artifact
            log.info("blueprint %s stays in its state: %s", p.digest, exc)
    return manifest


def _record_attempt(
    forge: "Forge", p: Prepared, result: pb.CompilationResult, manifest: Any, claimed: bool
) -> None:
    try:
        toolchain = manifest.toolchain_hash if manifest is not None else forge.toolchain_hash
        forge.store.record_attempt(p.digest, p.strategy, result.outcome, toolchain=toolchain)
        # Only the job that claimed a fresh blueprint moves it: a failed recompile at another
        # tier must not invalidate a blueprint that already has a good artifact.
        if claimed and not result.success:
            target = "INVALID" if result.outcome in BLUEPRINT_FAULTS else "SUBMITTED"
            forge.store.transition(p.digest, target, expect_from="COMPILING", actor=forge.instance_id)
    except Exception as exc:  # noqa: BLE001
        log.info("recording the attempt for %s failed: %s", p.digest, exc)
