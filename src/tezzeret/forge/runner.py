"""`JobRunner`: one job from the queue to its end, built from explicit dependencies.

Owns the steps after a job leaves the queue, in the order upstream §1.4 requires: journal
*started* → claim the blueprint → run it through the executor, tier by tier down the fallback
ladder → the final outcome to the breakers → sign → WAL BEGIN → store (the signed file written once,
straight into its blob) → WAL COMMIT → journal *finished* or *failed* with the job's events (the
durable outbox) → the attempts on the blueprint's record → publish → journal *published*.

The ladder (the design's): a tier that fails or misses its budget falls to the next tier down,
ending at EMERGENCY; the result, the manifest and the events say which tier was asked, which was
served and why. Only the blueprint's own failures fall back (verification or compilation failed,
budget missed, out of memory); a crash, a sandbox violation or a lost node ends the job.

Fault accounting: a failure the blueprint causes counts against the blueprint (after
`compilation.max_blueprint_failures` it is quarantined: no automatic path submits it again); the
service's breakers count only what points at the forge or the host: a job that falls back and is
served is a success for them, and a blueprint failing again is its own problem, not the host's.

The signing key stays in this process: an executor only ever sees the job. Must never compile
here, never let one job's failure escape as an exception (a failure is a result, recorded in the
journal and the store), and never touch the queue, the registry or the API.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tezzeret import metrics
from tezzeret.artifact import file as artifact_file
from tezzeret.cache import CompileCache
from tezzeret.artifact.target import target_string
from tezzeret.blueprint.features import features
from tezzeret.compile.identity import artifact_id, host_target, toolchain_for_tier
from tezzeret.compile.tiers import tier_for
from tezzeret.config import Settings
from tezzeret.forge import payback
from tezzeret.forge.audit import AuditLog
from tezzeret.forge.jobs import Job
from tezzeret.forge.publish import Publisher, outbox_for
from tezzeret.leyline import SCHEMA_VERSION, Strategy, encode, pb
from tezzeret.resilience import BreakerRegistry, ConservativeModeController
from tezzeret.sandbox.executor import Executor
from tezzeret.store import SigningKey, Store
from tezzeret.wal import JobJournal, Wal

log = logging.getLogger(__name__)

# Compile errors that are a fact about (blueprint, tier, toolchain): the tier is skipped for this
# blueprint under this toolchain from then on, and the next tier down is tried.
DETERMINISTIC_CODES = frozenset({"COMPILE_VERIFICATION_FAILED", "COMPILE_FAILED"})
_FALLBACK_CODES = {
    "COMPILE_VERIFICATION_FAILED": "no entry passed verification against eager",
    "COMPILE_FAILED": "torch could not compile it",
    "COMPILE_BUDGET_EXCEEDED": "missed its budget",
}
# Outcomes that are the blueprint's doing (they count towards its quarantine).
BLUEPRINT_OUTCOMES = frozenset({"TIMEOUT", "OUT_OF_MEMORY", "REJECTED"})
# The least time worth starting a tier with when a job's own deadline is near.
_MIN_TIER_S = 2.0


def fallback_reason(wres: pb.WorkerResult) -> str | None:
    """Why this attempt's tier should give way to the next one down, or None when it should not."""
    if wres.outcome == pb.OUTCOME_TIMEOUT:
        return "missed its budget"
    if wres.outcome == pb.OUTCOME_OUT_OF_MEMORY:
        return "ran out of memory"
    if wres.outcome == pb.OUTCOME_REJECTED and wres.error_code in _FALLBACK_CODES:
        return _FALLBACK_CODES[wres.error_code]
    return None


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
    audit: AuditLog
    jobs_dir: Path
    instance_id: str
    # Called when the bus did not take a job's events: the forge's outbox loop retries them.
    on_unpublished: Callable[[], None] = lambda: None

    def worker_job(self, job: Job, tier: Strategy, *, budget_ms: int, notes: list[str] | tuple[str, ...] = ()) -> pb.WorkerJob:
        memory = self.settings.resources.per_job_memory_limits.for_strategy(tier)
        if job.request.options.memory_budget_mb:
            memory = min(memory, int(job.request.options.memory_budget_mb))
        eff = self.conservative.effective()
        params = [
            # What the manifest records of the ladder: the tier asked and why this one serves.
            pb.KeyValue(key="strategy_requested", value=(job.requested_strategy or job.strategy).value),
            pb.KeyValue(key="fallback_reason", value="; ".join(notes)),
            # The GPU share of this job (conservative mode lowers it) and the configured cap.
            pb.KeyValue(key="gpu_fraction", value=f"{eff.gpu_utilization_limit:g}"),
            pb.KeyValue(key="gpu_memory_gb", value=f"{self.settings.resources.max_gpu_memory_gb:g}"),
        ]
        return pb.WorkerJob(
            params=params,
            schema_version=SCHEMA_VERSION,
            job_id=job.job_id,
            task="compile",
            blueprint=encode(job.ir),
            strategy=tier.pb,
            batch_sizes=list(job.request.options.batch_sizes),
            output_dir=str(self.jobs_dir / job.job_id),
            memory_limit_mb=memory,
            timeout_ms=budget_ms,
            cpu_only=eff.cpu_only_requested,
            target=job.target or target_string(host_target()),
        )

    def _budget_ms(self, job: Job, tier: Strategy) -> int | None:
        """The tier's budget (stretched in conservative mode), capped by the job's own deadline;
        None when too little of the deadline is left to start the tier at all."""
        budget = self.conservative.effective().timeout_ms(tier)
        if job.deadline is not None:
            left = (job.deadline - time.monotonic()) * 1000
            if left < _MIN_TIER_S * 1000:
                return None
            budget = min(budget, int(left))
        return budget

    async def run(self, job: Job, *, emergency: bool) -> tuple[pb.CompilationResult, list[pb.OutboxEvent]]:
        """Run `job` to its end (journaled, stored); returns its result and the events that announce
        it. The caller publishes them once the job shows as ended, so whoever hears of the end can
        read it (`GET /v1/jobs/ID`); until then the journal holds them for the outbox loop."""
        conservative_before = self.conservative.active
        await self.journal.started_async(job.job_id)
        claimed = await asyncio.to_thread(self.store.claim, job.digest, self.instance_id)
        requested = job.requested_strategy or job.strategy
        tier = job.strategy
        notes: list[str] = list(job.fallback_notes)
        started = time.monotonic()
        stored: Any = None  # a lower tier's artifact already in the store: served as it is
        while True:
            if tier is not job.strategy:
                stored = await asyncio.to_thread(
                    self.store.find_artifact, artifact_id(job.digest, tier_for(tier), job.target_spec)
                )
                if stored is not None and not stored.corrupt:
                    wres = pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS)
                    break
                stored = None
            budget = self._budget_ms(job, tier)
            if budget is None:
                wres = pb.WorkerResult(
                    job_id=job.job_id, outcome=pb.OUTCOME_TIMEOUT, error_code="JOB_DEADLINE",
                    error="the job's deadline (request timeout_ms / emergency deadline_ms) passed before "
                          f"{tier.value} could start",
                )
                break
            wjob = self.worker_job(job, tier, budget_ms=budget, notes=notes)
            Path(wjob.output_dir).mkdir(parents=True, exist_ok=True)
            wres = await self.executor.run(wjob, emergency=emergency)
            try:
                self.cache.record_l3_details(wres.details)
            except ValueError:
                pass
            if wres.outcome != pb.OUTCOME_SUCCESS:
                metrics.SANDBOX_KILLS.labels(outcome=pb.JobOutcome.Name(wres.outcome).removeprefix("OUTCOME_").lower()).inc()
            if wres.outcome == pb.OUTCOME_NODE_LOST and len(job.node_losses) < self.settings.ray.max_node_losses_per_job:
                # The job is still journaled as started (a crash now replays it too): run it again
                # on a live node, at the same tier. Neither the breakers nor the blueprint's
                # failure count hear of it.
                job.node_losses.append(wres.error or "compile node lost")
                metrics.JOBS_RESUBMITTED.labels(reason="node_lost").inc()
                log.warning("%s: %s; running it again (%d of at most %d)", job.job_id, wres.error,
                            len(job.node_losses), self.settings.ray.max_node_losses_per_job)
                self.audit.record(requestor="forge", action="job_resubmitted", blueprint=job.digest,
                                  outcome="node_lost", job_id=job.job_id, reason=wres.error)
                continue
            reason = fallback_reason(wres)
            if wres.outcome == pb.OUTCOME_SUCCESS or reason is None or tier is Strategy.EMERGENCY:
                break
            await asyncio.to_thread(self._record_attempt, job, tier, wres.outcome, wres.error_code, False, wres)
            if await asyncio.to_thread(self._quarantined, job.digest):
                break  # no automatic path, the ladder included, works on a quarantined blueprint
            lower = tier.down()
            notes.append(f"{tier.value} {reason} ({wres.error_code or pb.JobOutcome.Name(wres.outcome)})")
            metrics.FALLBACKS.labels(strategy_from=tier.value, strategy_to=lower.value, reason=reason).inc()
            log.info("%s: %s %s; falling back to %s", job.job_id, job.name, reason, lower.value)
            tier = lower
        result = self._result(job, tier, wres, conservative_before, (time.monotonic() - started) * 1000)
        if tier is not requested:
            result.strategy_requested = requested.pb
            result.fallback_reason = "; ".join(notes) or "conservative mode cap"
        manifest: pb.CompiledKernelArtifact | None = None
        if stored is not None:
            manifest = stored.manifest
            result.from_cache = True
            result.artifact_ref = f"/v1/artifacts/{stored.artifact_id}/download"
            result.payload_sha256 = stored.file_sha256
        elif wres.outcome == pb.OUTCOME_SUCCESS:
            try:
                manifest = await self.persist(job, tier, wres, result, claimed)
            except Exception as exc:  # noqa: BLE001 - recorded as this job's failure
                log.exception("persisting %s failed", result.artifact_id)
                result.outcome = pb.OUTCOME_INTERNAL_ERROR
                result.error = f"{type(exc).__name__}: {exc}"
                result.error_code = getattr(exc, "code", "PERSIST_FAILED")
                self.breakers["store"].record_failure(result.error)
        result.success = result.outcome == pb.OUTCOME_SUCCESS
        outcome_label = pb.JobOutcome.Name(result.outcome).removeprefix("OUTCOME_")
        repeat = await asyncio.to_thread(self._blueprint_failures, job.digest) if not result.success else 0
        result.conservative_mode_triggered = self.feed_breakers(result, tier, repeat_offender=repeat > 0)
        outbox = outbox_for(job, result, manifest)
        if result.success:
            await self.journal.finished_async(job.job_id, result, outbox)
        else:
            await self.journal.failed_async(job.job_id, result, outbox)
        # A lower tier's stored artifact served the job: nothing was compiled, nothing measured.
        await asyncio.to_thread(self._after, job, tier, result, claimed, None if stored is not None else wres)
        metrics.COMPILATION_DURATION_MS.labels(
            strategy=tier.value, status=outcome_label, conservative_mode=str(conservative_before).lower(),
        ).observe(result.compilation_time_ms)
        metrics.JOBS.labels(outcome=outcome_label, strategy_requested=requested.value, strategy_served=tier.value).inc()
        if manifest is not None:
            entries = [e.speedup_train for e in manifest.entries if e.grad_enabled and e.serve_compiled]
            metrics.SERVED_SPEEDUP.labels(strategy=tier.value).observe(max(entries) if entries else 1.0)
        self.audit.record(
            requestor=job.requested_by or job.source, action=f"job_ended({job.source})", blueprint=job.digest,
            outcome=outcome_label, job_id=job.job_id, artifact_id=result.artifact_id,
            strategy_requested=requested.value, strategy_served=tier.value,
            fallback_reason=result.fallback_reason or None, error_code=result.error_code or None,
        )
        shutil.rmtree(self.jobs_dir / job.job_id, ignore_errors=True)
        return result, outbox

    async def publish(self, job_id: str, outbox: list[pb.OutboxEvent]) -> bool:
        """Send a job's recorded events; acknowledge them in the journal once the bus has them all
        (otherwise recovery sends them again: consumers drop duplicates by message id)."""
        if not outbox:
            return True
        if await self.publisher.publish_outbox(outbox):
            await self.journal.published_async(job_id)
            return True
        self.on_unpublished()
        return False

    def _result(
        self, job: Job, tier: Strategy, wres: pb.WorkerResult, conservative_before: bool, wall_ms: float
    ) -> pb.CompilationResult:
        result = pb.CompilationResult(
            schema_version=SCHEMA_VERSION,
            request_id=job.request_id,
            job_id=job.job_id,
            outcome=wres.outcome,
            artifact_id=artifact_id(job.digest, tier_for(tier), job.target_spec),
            blueprint_digest=job.digest,
            strategy_used=tier.pb,
            compilation_time_ms=wres.compile_ms or wall_ms,
            peak_rss_bytes=wres.peak_rss_bytes,
            conservative_mode=conservative_before,
        )
        if wres.outcome != pb.OUTCOME_SUCCESS:
            result.error = wres.error or pb.JobOutcome.Name(wres.outcome)
            result.error_code = wres.error_code or pb.JobOutcome.Name(wres.outcome)
            for kv in wres.details:
                if kv.key == "exit_status" and kv.value.lstrip("-").isdigit():
                    result.exit_status = int(kv.value)
                elif kv.key == "signal":
                    result.signal = kv.value
                elif kv.key == "stderr_tail":
                    result.stderr_tail = kv.value
        return result

    def feed_breakers(self, result: pb.CompilationResult, tier: Strategy, *, repeat_offender: bool) -> bool:
        """The job's final outcome to the breakers; returns True when it triggered conservative mode.

        A blueprint that already failed before is its own problem (it heads for quarantine), so its
        timeouts and memory failures do not count against the host; a verification failure counts
        for `kernel_validation` only when even the eager EMERGENCY build failed it (a fault of the
        forge's own making: every valid blueprint verifies eagerly)."""
        b = self.breakers
        outcome = result.outcome
        detail = f"{result.blueprint_digest[:16]} {tier.value}: {result.error_code} {result.error}".strip()
        if outcome == pb.OUTCOME_SUCCESS:
            b["compilation_timeout"].record_success()
            b["kernel_validation"].record_success()
            b["gpu_memory"].record_success()
            return False
        if outcome == pb.OUTCOME_TIMEOUT and not repeat_offender:
            b["compilation_timeout"].record_failure(detail)
            return self.conservative.trigger("compilation_timeout", detail)
        if outcome == pb.OUTCOME_OUT_OF_MEMORY and not repeat_offender:
            b["gpu_memory"].record_failure(detail)
            return self.conservative.trigger("memory_pressure", detail)
        if outcome == pb.OUTCOME_REJECTED and tier is Strategy.EMERGENCY and result.error_code in DETERMINISTIC_CODES:
            b["kernel_validation"].record_failure(detail)
        elif outcome in (pb.OUTCOME_CRASH, pb.OUTCOME_SANDBOX_VIOLATION):
            return self.conservative.trigger("torch_crash", detail)
        return False

    async def persist(
        self, job: Job, tier: Strategy, wres: pb.WorkerResult, result: pb.CompilationResult, claimed: bool
    ) -> pb.CompiledKernelArtifact:
        """Sign, then WAL BEGIN → store → WAL COMMIT (upstream §1.4, the reversed order)."""
        path = Path(wres.artifact_path)
        header = await asyncio.to_thread(artifact_file.read_header, path)
        manifest = header.manifest
        if manifest.artifact_id != result.artifact_id:
            raise RuntimeError(
                f"the worker built artifact {manifest.artifact_id!r} but the job expected {result.artifact_id!r}"
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
        result.artifact_ref = f"/v1/artifacts/{result.artifact_id}/download"
        result.payload_sha256 = record.file_sha256
        if claimed:
            try:
                await asyncio.to_thread(
                    self.store.transition, job.digest, "COMPILED", expect_from="COMPILING", actor=self.instance_id
                )
            except Exception as exc:  # noqa: BLE001 - lifecycle bookkeeping must not undo a stored artifact
                log.info("blueprint %s stays in its state: %s", job.digest, exc)
        return manifest

    # ---- the blueprint's record (blocking: run in a thread) ------------------------------------

    def _record_attempt(
        self, job: Job, tier: Strategy, outcome: int, error_code: str, final: bool = True,
        wres: pb.WorkerResult | None = None,
    ) -> None:
        try:
            toolchain = toolchain_for_tier(tier_for(tier), job.target_spec).hash()
            # What it cost and bought, beside the blueprint's features: the payback predictor's history.
            measured = payback.attempt_record(features(job.ir), wres, job.target) if wres is not None else {}
            self.store.record_attempt(
                job.digest, tier.pb, outcome, toolchain=toolchain, error_code=error_code, final=final, **measured
            )
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail the job
            log.info("recording the attempt for %s failed: %s", job.digest, exc)

    def _quarantined(self, digest: str) -> bool:
        record = self.store.find_blueprint(digest)
        return record is not None and record.quarantined

    def _blueprint_failures(self, digest: str) -> int:
        try:
            return self.store.failures_since_success(digest, BLUEPRINT_OUTCOMES)
        except Exception:  # noqa: BLE001 - unknown history: treat as a first failure
            return 0

    def _after(
        self, job: Job, tier: Strategy, result: pb.CompilationResult, claimed: bool, wres: pb.WorkerResult | None
    ) -> None:
        """Record the final attempt (with what `wres` measured); quarantine a blueprint that keeps
        failing by itself; move a freshly claimed blueprint on."""
        self._record_attempt(job, tier, result.outcome, result.error_code, wres=wres)
        payback.observe(job.prediction, tier, wres)
        try:
            name = pb.JobOutcome.Name(result.outcome).removeprefix("OUTCOME_")
            limit = self.settings.compilation.max_blueprint_failures
            if name in BLUEPRINT_OUTCOMES and self.store.failures_since_success(job.digest, BLUEPRINT_OUTCOMES) >= limit:
                reason = (
                    f"{limit} failures of its own since its last success (last: {tier.value} "
                    f"{result.error_code}: {result.error[:200]})"
                )
                self.store.quarantine_blueprint(job.digest, reason)
                log.warning("blueprint %s quarantined: %s", job.digest[:16], reason)
                self.audit.record(requestor="forge", action="blueprint_quarantined", blueprint=job.digest,
                                  outcome="quarantined", reason=reason)
            # Only the job that claimed a fresh blueprint moves it: a failed recompile at another
            # tier must not invalidate a blueprint that already has a good artifact.
            if claimed and not result.success:
                self.store.transition(job.digest, "SUBMITTED", expect_from="COMPILING", actor=self.instance_id)
        except Exception as exc:  # noqa: BLE001
            log.info("recording the end of %s failed: %s", job.job_id, exc)
