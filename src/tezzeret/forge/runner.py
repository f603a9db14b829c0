"""`JobRunner`: one job from the queue to its end, built from explicit dependencies.

Owns the steps after a job leaves the queue, in the order upstream §1.4 requires: journal
*started* → claim the blueprint → run it through the executor → outcome to the breakers → sign →
WAL BEGIN → store (the signed file written once, straight into its blob) → WAL COMMIT → journal
*finished* or *failed* → the attempt on the blueprint's record → publish. The WAL transaction opens
before the store write and commits after the store acknowledges, so a crash in between is visible
to recovery. The signing key stays in this process: an executor only ever sees the job.

Must never compile here, never let one job's failure escape as an exception (a failure is a
result, recorded in the journal and the store), and never touch the queue, the registry or the
API: the service does those around `run`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tezzeret import metrics
from tezzeret.artifact import file as artifact_file
from tezzeret.cache import CompileCache
from tezzeret.config import Settings
from tezzeret.forge.jobs import Job
from tezzeret.forge.publish import Publisher, completion_event
from tezzeret.leyline import SCHEMA_VERSION, encode, pb
from tezzeret.resilience import BreakerRegistry, ConservativeModeController
from tezzeret.sandbox.executor import Executor
from tezzeret.store import SigningKey, Store
from tezzeret.wal import JobJournal, Wal

log = logging.getLogger(__name__)

# Worker outcomes that are the blueprint's fault, not the forge's: no retry, blueprint INVALID.
BLUEPRINT_FAULTS = (pb.OUTCOME_REJECTED,)


@dataclass
class JobRunner:
    settings: Settings
    executor: Executor
    store: Store
    wal: Wal
    journal: JobJournal
    key: SigningKey
    cache: CompileCache[Any]
    breakers: BreakerRegistry
    conservative: ConservativeModeController
    publisher: Publisher
    jobs_dir: Path
    instance_id: str

    def worker_job(self, job: Job, *, cpu_only: bool) -> pb.WorkerJob:
        eff = self.conservative.effective()
        strategy = job.strategy
        return pb.WorkerJob(
            schema_version=SCHEMA_VERSION,
            job_id=job.job_id,
            task="compile",
            blueprint=encode(job.ir),
            strategy=strategy.pb,
            batch_sizes=list(job.request.options.batch_sizes),
            output_dir=str(self.jobs_dir / job.job_id),
            memory_limit_mb=self.settings.resources.per_job_memory_limits.for_strategy(strategy),
            timeout_ms=eff.timeout_ms(strategy),
            cpu_only=cpu_only,
        )

    def feed_breakers(self, outcome: int, detail: str) -> bool:
        """Record the outcome on the breakers; returns True when it triggered conservative mode."""
        b = self.breakers
        triggered = False
        if outcome == pb.OUTCOME_SUCCESS:
            b["compilation_timeout"].record_success()
            b["kernel_validation"].record_success()
            b["gpu_memory"].record_success()
        elif outcome == pb.OUTCOME_TIMEOUT:
            b["compilation_timeout"].record_failure(detail)
            triggered = self.conservative.trigger("compilation_timeout", detail)
        elif outcome == pb.OUTCOME_REJECTED:
            # A verification (parity) failure: the kernel is wrong, count it for kernel_validation.
            b["kernel_validation"].record_failure(detail)
        elif outcome == pb.OUTCOME_OUT_OF_MEMORY:
            b["gpu_memory"].record_failure(detail)
            triggered = self.conservative.trigger("memory_pressure", detail)
        elif outcome in (pb.OUTCOME_CRASH, pb.OUTCOME_SANDBOX_VIOLATION):
            triggered = self.conservative.trigger("torch_crash", detail)
        return triggered

    async def run(self, job: Job, *, emergency: bool) -> pb.CompilationResult:
        """Run `job` to its end (journaled, stored, published); returns its result."""
        conservative_before = self.conservative.active
        await self.journal.started_async(job.job_id)
        claimed = await asyncio.to_thread(self.store.claim, job.digest, self.instance_id)
        if not claimed:
            # Already COMPILED / VALIDATED (another strategy's artifact) or INVALID: the artifact id
            # is new, so compile anyway; the claim protects only the first compile of a blueprint.
            log.debug("blueprint %s not claimable (state moved on); compiling %s anyway", job.digest, job.artifact_id)
        wjob = self.worker_job(job, cpu_only=self.conservative.effective().cpu_only_requested)
        Path(wjob.output_dir).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        wres = await self.executor.run(wjob, emergency=emergency)
        wall_ms = (time.monotonic() - t0) * 1000
        try:
            self.cache.record_l3_details(wres.details)
        except ValueError:
            pass
        detail = f"{job.name} {job.strategy.value}: {wres.error_code or ''} {wres.error or ''}".strip()
        triggered = self.feed_breakers(wres.outcome, detail)
        result = pb.CompilationResult(
            schema_version=SCHEMA_VERSION,
            request_id=job.request_id,
            job_id=job.job_id,
            outcome=wres.outcome,
            artifact_id=job.artifact_id,
            blueprint_digest=job.digest,
            strategy_used=job.strategy.pb,
            compilation_time_ms=wres.compile_ms or wall_ms,
            peak_rss_bytes=wres.peak_rss_bytes,
            conservative_mode=conservative_before,
            conservative_mode_triggered=triggered,
        )
        manifest: pb.CompiledKernelArtifact | None = None
        if wres.outcome == pb.OUTCOME_SUCCESS:
            try:
                manifest = await self.persist(job, wres, result, claimed)
            except Exception as exc:  # noqa: BLE001 - recorded as this job's failure
                log.exception("persisting %s failed", job.artifact_id)
                result.outcome = pb.OUTCOME_INTERNAL_ERROR
                result.error = f"{type(exc).__name__}: {exc}"
                result.error_code = getattr(exc, "code", "PERSIST_FAILED")
                self.breakers["store"].record_failure(result.error)
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
            await self.journal.finished_async(job.job_id, result)
        else:
            await self.journal.failed_async(job.job_id, result)
        await asyncio.to_thread(self._record_attempt, job, result, manifest, claimed)
        outcome_label = pb.JobOutcome.Name(result.outcome).removeprefix("OUTCOME_")
        metrics.COMPILATION_DURATION_MS.labels(
            strategy=job.strategy.value, status=outcome_label, conservative_mode=str(conservative_before).lower(),
        ).observe(result.compilation_time_ms)
        metrics.JOBS.labels(
            outcome=outcome_label, strategy_requested=job.strategy.value, strategy_served=job.strategy.value
        ).inc()
        shutil.rmtree(self.jobs_dir / job.job_id, ignore_errors=True)
        await self.publisher.artifact_ready(
            completion_event(request_id=job.request_id, blueprint_id=job.digest, result=result, manifest=manifest),
            manifest,
        )
        return result

    async def persist(
        self, job: Job, wres: pb.WorkerResult, result: pb.CompilationResult, claimed: bool
    ) -> pb.CompiledKernelArtifact:
        """Sign, then WAL BEGIN → store → WAL COMMIT (upstream §1.4, the reversed order)."""
        path = Path(wres.artifact_path)
        header = await asyncio.to_thread(artifact_file.read_header, path)
        manifest = header.manifest
        if manifest.artifact_id != job.artifact_id:
            raise RuntimeError(
                f"the worker built artifact {manifest.artifact_id!r} but the job expected {job.artifact_id!r}"
            )
        signature = self.key.sign(header.manifest_bytes)
        context = pb.ExecutionContext(
            schema_version=SCHEMA_VERSION,
            model_hash=job.digest,
            toolchain_version=manifest.toolchain_hash,
            training_run_id=job.request_id,
            hardware_profile=manifest.target,
            operation="COMPILATION_CHECKPOINT",
        )

        def transaction() -> Any:
            # The intent is durable before Urza is written, so a crash between the two leaves a record.
            txn = self.wal.begin(context, durable=True)
            try:
                txn.data(encode(result))
                record = self.store.put_artifact(
                    manifest, artifact_file.signed_chunks(path, signature, header), signature,
                    public_key=self.key.public_key_bytes,
                )
            except BaseException:
                txn.abort()
                raise
            txn.commit()
            return record

        record = await asyncio.to_thread(transaction)
        self.breakers["store"].record_success()
        result.artifact_ref = f"/v1/artifacts/{job.artifact_id}/download"
        result.payload_sha256 = record.file_sha256
        if claimed:
            try:
                await asyncio.to_thread(
                    self.store.transition, job.digest, "COMPILED", expect_from="COMPILING", actor=self.instance_id
                )
            except Exception as exc:  # noqa: BLE001 - lifecycle bookkeeping must not undo a stored artifact
                log.info("blueprint %s stays in its state: %s", job.digest, exc)
        return manifest

    def _record_attempt(
        self, job: Job, result: pb.CompilationResult, manifest: pb.CompiledKernelArtifact | None, claimed: bool
    ) -> None:
        from tezzeret.compile.identity import toolchain_for_tier
        from tezzeret.compile.tiers import tier_for

        try:
            toolchain = manifest.toolchain_hash if manifest is not None else toolchain_for_tier(tier_for(job.strategy)).hash()
            self.store.record_attempt(job.digest, job.strategy.pb, result.outcome, toolchain=toolchain)
            # Only the job that claimed a fresh blueprint moves it: a failed recompile at another
            # tier must not invalidate a blueprint that already has a good artifact.
            if claimed and not result.success:
                target = "INVALID" if result.outcome in BLUEPRINT_FAULTS else "SUBMITTED"
                self.store.transition(job.digest, target, expect_from="COMPILING", actor=self.instance_id)
        except Exception as exc:  # noqa: BLE001
            log.info("recording the attempt for %s failed: %s", job.digest, exc)
