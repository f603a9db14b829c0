"""The `Forge`: Tezzeret as one running service. It builds the parts and routes work between them.

Owns: start-up (config → breakers, conservative mode, WAL + job journal, store, signing key, bus,
executor; then WAL recovery rebuilds the queue), the path of one submission (intake → validate →
artifact id → in flight / L1 / L2 → store the blueprint → journal (durable before the answer) →
queue → PipelineManager), handing each dispatched job to the `JobRunner`, the emergency path,
job/artifact views, health, and shutdown. The parts that poll Urza, recompile at idle and listen
on the bus get the narrow calls they need (`submit`, `active_digests`, …), never this object.
Must never compile in this process (the executor does), never hand the signing key to a worker,
and never await a compile while answering a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tezzeret import __version__, metrics
from tezzeret.config import Settings
from tezzeret.forge.errors import (
    ArtifactNotFound,
    BlueprintNotFound,
    BlueprintQuarantined,
    ForgeError,
    ForgeNotStarted,
    IntakeClosed,
    JobNotFound,
    JournalFailed,
    QueueFull,
    RequestInvalid,
    StoreUnavailable,
)
from tezzeret.forge.health import HealthFacts, HealthReport, assess

if TYPE_CHECKING:
    from tezzeret.resilience.ttl import TTLCache
from tezzeret.forge.intake import Intake, buildable_targets, new_job_id
from tezzeret.forge.jobs import Admission, Job, JobRegistry, JobStatus, priority_name
from tezzeret.forge.pipeline import PipelineManager
from tezzeret.forge.publish import Publisher, completion_event, outbox_for
from tezzeret.forge.queue import PriorityJobQueue
from tezzeret.leyline import SCHEMA_VERSION, Strategy, encode, pb
from tezzeret.sandbox.executor import Executor

log = logging.getLogger(__name__)
T = TypeVar("T")

# How often the outbox is retried while events wait, and the store and disk are looked at.
_OUTBOX_RETRY_S = 2.0
_MONITOR_S = 5.0

# Submissions validated at once (in worker threads).
_PREPARE_SLOTS = 2


class Forge:
    """The service. `await start()`, then submit/inspect; `await close()` to stop.

    `executor` replaces the one the settings choose (`sandbox.backend`): tests run jobs through
    `InProcessExecutor` this way, without starting torch workers."""

    def __init__(self, settings: Settings, *, executor: Executor | None = None, instance_id: str | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        self._executor_override = executor
        self._started = False
        self._closing = False
        self._draining = False
        self.registry = JobRegistry(
            ttl_s=settings.memory_management.job_ttl_seconds,
            max_finished=settings.memory_management.max_entries_per_cache,
        )
        self.queue = PriorityJobQueue(aging_interval_s=settings.compilation.aging_interval_s)
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._emergency_ms_ema = 2000.0
        self._disk: dict[str, Any] = {}
        self._store_facts: dict[str, Any] = {}
        self._outbox_waiting = asyncio.Event()
        self._last_recovery: dict[str, Any] | None = None
        self._wal_ok = True
        self.jobs_dir = settings.state_dir / "jobs"
        self._prepare_slots = asyncio.Semaphore(_PREPARE_SLOTS)
        from tezzeret.forge.audit import AuditLog
        from tezzeret.forge.payback import Explorer

        self._explore = Explorer(settings.payback.explore_every)

        self.audit = AuditLog(settings.audit_log_path)

    # ------------------------------------------------------------------ start / stop

    async def start(self) -> Forge:
        from tezzeret.bus import make_bus
        from tezzeret.bus.ratelimit import TokenBucket
        from tezzeret.cache import CompileCache, store_l2
        from tezzeret.forge.bus_intake import BusIntake
        from tezzeret.forge.idle import IdleRecompiler
        from tezzeret.forge.integrity import StoreIntegrity
        from tezzeret.forge.polling import UrzaPoller
        from tezzeret.forge.runner import JobRunner
        from tezzeret.resilience import (
            BreakerRegistry,
            ConservativeModeController,
            GpuProbe,
            MonotonicClock,
            ResourceMonitor,
        )
        from tezzeret.resilience.ttl import TTLMemoryManager
        from tezzeret.sandbox import make_executor
        from tezzeret.store import SigningKey, Store
        from tezzeret.wal import JobJournal, Wal

        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.clock = MonotonicClock()
        self.breakers = BreakerRegistry.from_settings(s, self.clock)
        self.conservative = ConservativeModeController(s, self.breakers, self.clock)
        # GPU readings of the compile workers' own processes, not the device training shares.
        self.monitor = ResourceMonitor(self.clock, gpu=GpuProbe(pids=self._compile_worker_pids))
        self.memory = TTLMemoryManager(s, self.clock)
        self.emergency_bucket = TokenBucket(s.emergency.max_per_min)
        # At-least-once delivery: the same emergency request id gets the same answer for an hour.
        self._emergency_acks: TTLCache[str, Any] = self.memory.create("emergency_acks", ttl_s=3600.0, max_entries=10_000)
        check_wal_filesystem(s)
        t0 = time.monotonic()
        self.wal = await asyncio.to_thread(Wal.open, s.wal_dir, s.wal)
        self.journal = JobJournal(self.wal)
        wal_open_s = time.monotonic() - t0
        self.store = await asyncio.to_thread(Store.open, s.store_dir)
        self.key = await asyncio.to_thread(SigningKey.load_or_create, s.key_dir)
        offered = await asyncio.to_thread(buildable_targets, s)
        self.intake = Intake(s, self._lookup_blueprint, lambda: offered)
        self.cache: CompileCache[Any] = CompileCache.from_settings(s, l2=store_l2(self.store), memory=self.memory)
        self.integrity = StoreIntegrity(self.store, self.memory.create("artifacts"), self._on_corrupt)
        self.bus = make_bus(s, self.breakers)
        self.bus_intake = BusIntake(
            self.bus, s, submit=self.submit, handle_emergency=self.handle_emergency_from_bus,
            store=self.store, audit=self.audit, instance_id=self.instance_id,
        )
        self.bus_intake.subscribe()
        await self.bus.start()
        self.publisher = Publisher(self.bus)
        self.executor = self._executor_override or make_executor(s)
        await self.executor.start()
        self.runner = JobRunner(
            settings=s, executor=self.executor, store=self.store, wal=self.wal, journal=self.journal,
            key=self.key, cache=self.cache, breakers=self.breakers, conservative=self.conservative,
            publisher=self.publisher, audit=self.audit, jobs_dir=self.jobs_dir, instance_id=self.instance_id,
            on_unpublished=self._outbox_waiting.set,
        )
        self.pipeline = PipelineManager(
            self.queue,
            capacity=lambda: self.conservative.effective().max_concurrent_jobs,
            runner=self._run_job,
            emergency_slot=s.emergency.reserved_worker,
            hold=self._dispatch_hold,
            admits=self._memory_admits,
        )
        await self._recover(wal_open_s)
        self._started = True
        self.pipeline.start()
        self._spawn(self._monitor_loop(), "resource-monitor")
        self._spawn(self._housekeeping_loop(), "housekeeping")
        self._spawn(self._outbox_loop(), "outbox")
        self._spawn(self._scrub_loop(), "store-scrub")
        # Artifacts found corrupt while the forge was down (`tezzeret store scrub`) are rebuilt now.
        for record in await asyncio.to_thread(self.store.corrupt_artifacts):
            self._spawn(self._rebuild(record), f"rebuild-{record.artifact_id}")
        self.poller = UrzaPoller(self.store, self.submit, self.active_digests, s.polling)
        self.idle = IdleRecompiler(
            self.store, self.submit, may_run=self._idle_allowed, is_finished=self._job_finished,
            interest_threshold=s.compilation.tamiyo_interest_threshold,
        )
        self._spawn(self.poller.run(), "urza-polling")
        self._spawn(self.idle.run(), "idle-recompilation")
        return self

    def active_digests(self) -> set[str]:
        """Blueprints with a job that has not finished (or is being admitted right now)."""
        return self.registry.active_digests()

    def _idle_allowed(self) -> bool:
        return (
            self.settings.compilation.idle_recompilation
            and not self._draining
            and self.conservative.effective().idle_recompilation_allowed
            and self.pipeline.idle
        )

    def _job_finished(self, job_id: str) -> bool:
        job = self.registry.get(job_id)
        return job is None or job.status.finished

    def _dispatch_hold(self) -> str | None:
        # Urza's breaker open: compiling now would only produce artifacts that cannot be stored.
        # Work stays queued (and journaled) until a probe may go through.
        from tezzeret.resilience import BreakerState

        if self.breakers["store"].state is BreakerState.OPEN:
            return "store breaker OPEN"
        return None

    def job_memory_mb(self, job: Job) -> int:
        """What a job's worker may take: its tier's limit, or less when the request says so."""
        memory = self.settings.resources.per_job_memory_limits.for_strategy(job.strategy)
        asked = int(job.request.options.memory_budget_mb)
        return min(memory, asked) if asked else memory

    def _memory_admits(self, job: Job, running: list[Job]) -> str | None:
        budget = int(self.settings.resources.memory_budget_gb * 1024)
        used = sum(self.job_memory_mb(j) for j in running)
        need = self.job_memory_mb(job)
        if running and used + need > budget:
            return (f"waits for memory: {need} MiB more would exceed resources.memory_budget_gb "
                    f"({used} of {budget} MiB taken by running jobs)")
        return None

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def close(self, grace_s: float | None = None) -> list[str]:
        """Stop intake, let running jobs finish within the grace period, then stop everything.

        Returns jobs cut off mid-run; they stay `started` in the journal and are requeued by WAL
        recovery on the next start (their artifacts never half-exist: store writes are atomic).
        """
        if self._closing:
            return []
        self._closing = True
        self._draining = True
        grace = self.settings.sandbox.grace_period_s if grace_s is None else grace_s
        left: list[str] = []
        if self._started:
            left = await self.pipeline.close(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._started:
            await self.executor.close(min(grace, 5.0))
            await self.bus.close()
            await asyncio.to_thread(self.wal.close)
            await asyncio.to_thread(self.store.close)
            self.monitor.close()
        self.audit.close()
        self._started = False
        for job in self.registry.unfinished():
            if job.admitted is not None and not job.admitted.done():
                job.admitted.set_exception(IntakeClosed("the forge stopped"))
                job.admitted.exception()
        return left

    def drain(self) -> dict[str, Any]:
        """Stop accepting work; queued and running jobs go on."""
        self._draining = True
        return {"draining": True, "queued": len(self.queue), "running": self.pipeline.running if self._started else 0}

    def _require_open(self) -> None:
        if not self._started:
            raise ForgeNotStarted("the forge is not running; call Forge.start() first")
        if self._draining:
            raise IntakeClosed("the forge is draining or shutting down and accepts no new work; retry on another forge or after restart")

    # ------------------------------------------------------------------ recovery

    async def _recover(self, open_s: float) -> None:
        """Rebuild the registry and queue from the job journal (WAL recovery already ran)."""
        t0 = time.monotonic()
        state = await asyncio.to_thread(self.journal.state)
        requeued = finished_from_store = 0
        for rec in state.already_completed:
            result = self.journal.result_for(rec.artifact_id) or pb.CompilationResult(
                job_id=rec.job_id, success=True, outcome=pb.OUTCOME_FROM_CACHE, artifact_id=rec.artifact_id, from_cache=True
            )
            result.job_id = rec.job_id
            await self.journal.finished_async(rec.job_id, result)
        # Pending work is in priority+FIFO order; jobs running at the crash are already among it.
        for rec in sorted([*state.pending, *state.in_flight], key=lambda r: (r.priority, r.sequence)):
            try:
                job = self.intake.restore(rec)
            except Exception as exc:  # noqa: BLE001 - an unreadable record must not stop start-up
                log.error("journal record for job %s is unusable (%s); marking it failed", rec.job_id, exc)
                await self.journal.failed_async(
                    rec.job_id,
                    pb.CompilationResult(job_id=rec.job_id, success=False, outcome=pb.OUTCOME_INTERNAL_ERROR, error=str(exc)),
                )
                continue
            if await asyncio.to_thread(self.store.has_artifact, job.artifact_id):
                # Stored and committed before the crash, journal not yet told: finish, don't
                # rebuild; its events were never recorded, so record and send them now.
                job.result = self._cached_result(job)
                job.result.from_cache = False
                job.result.outcome = pb.OUTCOME_SUCCESS
                manifest = (await asyncio.to_thread(self.store.get_artifact, job.artifact_id)).manifest
                await self.journal.finished_async(job.job_id, job.result, outbox_for(job, job.result, manifest))
                await asyncio.to_thread(self._mark_compiled, job.digest)
                self.registry.add(job)
                self.registry.finish(job, JobStatus.SUCCEEDED)
                finished_from_store += 1
                continue
            if self.registry.active(job.artifact_id) is not None:
                continue
            job.admitted = self._resolved_future()
            self.registry.add(job)
            self.registry.activate(job)
            self.queue.push(job)
            requeued += 1
        # Finished jobs stay visible through `GET /v1/jobs/{id}` across restarts.
        for results, status in ((state.completed, JobStatus.SUCCEEDED), (state.failures, JobStatus.FAILED)):
            for artifact_id, result in results.items():
                if not result.job_id or self.registry.get(result.job_id) is not None:
                    continue
                self.registry.add(self._job_from_result(artifact_id, result, status))
        # Blueprints claimed by a previous (crashed) instance go back to SUBMITTED.
        released = await asyncio.to_thread(self.store.release_claims)
        unpublished = self.journal.state().unpublished
        if unpublished:
            self._outbox_waiting.set()
        report = getattr(self.wal, "recovery", None)
        self._last_recovery = {
            "wal": report.to_dict() if report is not None and hasattr(report, "to_dict") else _plain(report),
            "requeued_jobs": requeued,
            "finished_from_store": finished_from_store,
            "completed_artifacts": len(state.completed),
            "answered_from_journal": len(state.already_completed),
            "released_claims": len(released),
            "unpublished_events": sum(len(v) for v in unpublished.values()),
            "duration_ms": round((time.monotonic() - t0 + open_s) * 1000, 1),
        }
        metrics.QUEUE_DEPTH.set(len(self.queue))
        log.info("recovery: %s", self._last_recovery)

    def _mark_compiled(self, digest: str) -> None:
        record = self.store.find_blueprint(digest)
        if record is not None and record.state == "COMPILING":
            self.store.transition(digest, "COMPILED", actor=self.instance_id)

    def _job_from_result(self, artifact_id: str, result: pb.CompilationResult, status: JobStatus) -> Job:
        record = self.store.find_blueprint(result.blueprint_digest) if result.blueprint_digest else None
        request = pb.CompilationRequest(
            request_id=result.request_id, blueprint_id=result.blueprint_digest,
            strategy=result.strategy_used or None, priority=pb.PRIORITY_NORMAL,
        )
        job = Job(
            job_id=result.job_id,
            request=request,
            artifact_id=artifact_id,
            digest=result.blueprint_digest,
            name=record.name if record is not None else result.blueprint_digest[:16],
            source="journal",
            status=status,
            result=result,
        )
        job.finished_at = time.time()
        return job

    @staticmethod
    def _resolved_future() -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    # ------------------------------------------------------------------ intake

    def system_load(self) -> float:
        """0..1: the busier of the host CPU and the pipeline (running + waiting vs capacity)."""
        cap = self.settings.compile_slots()
        pipeline = min(1.0, (self.pipeline.running + len(self.queue)) / (2 * cap)) if self._started else 0.0
        latest = self.monitor.window.latest if self._started else None
        cpu = (latest.cpu_percent / 100.0) if latest is not None else 0.0
        return max(pipeline, min(1.0, cpu))

    def _downgrade(self) -> Any:
        eff = self.conservative.effective()
        return lambda strategy: Strategy.parse(eff.downgrade(strategy))

    async def submit(self, request: pb.CompilationRequest, source: str = "api") -> Admission:
        """Validate, dedupe, journal and queue one request. Returns once the job is durable.
        Every submission, from every source, and how it was answered is audited."""
        try:
            self._require_open()
            load, downgrade, conservative = self.system_load(), self._downgrade(), self.conservative.active
            # Validation of a big blueprint takes a while: never on the event loop, and at most
            # `_PREPARE_SLOTS` at once so submissions cannot crowd out everything else.
            async with self._prepare_slots:
                job = await asyncio.to_thread(
                    self.intake.prepare, request, system_load=load, conservative_downgrade=downgrade,
                    source=source, conservative=conservative,
                )
            self._require_open()  # draining may have begun while it was validated
            await self._apply_history(job)
            # An artifact already built or building is answered as it is: predicting whether to
            # build it would only slow the cached path (and could send the job to a lower tier).
            if self.registry.active(job.artifact_id) is None and not self.cache.holds(job.artifact_id):
                await self._apply_payback(job)
            if request.timeout_ms:
                job.deadline = time.monotonic() + request.timeout_ms / 1000.0
            admission = await self._admit(job)
        except ForgeError as exc:
            self._audit_submission(request, source, None, exc.code)
            raise
        self._audit_submission(request, source, admission, None)
        return admission

    def _audit_submission(self, request: pb.CompilationRequest, source: str, adm: Admission | None, code: str | None) -> None:
        outcome = "refused" if adm is None else ("from_cache" if adm.from_cache else "joined" if adm.joined else "queued")
        self.audit.record(
            requestor=request.requested_by or source, action=f"submit({source})",
            blueprint=adm.job.digest if adm is not None else (request.blueprint_id or request.blueprint.metadata.name or None),
            outcome=outcome, code=code, job_id=adm.job_id if adm is not None else None,
            request_id=request.request_id or None,
        )

    async def _apply_history(self, job: Job) -> None:
        """What the store knows of this blueprint: a quarantine refuses it; a tier that already
        failed to compile or verify it under the current toolchain is skipped (the job is admitted
        at the first tier down that has not), so a known failure is never paid for twice."""
        from tezzeret.forge.idle import current_toolchains
        from tezzeret.forge.runner import DETERMINISTIC_CODES

        record = await asyncio.to_thread(self.store.find_blueprint, job.digest)
        if record is None:
            return
        if record.quarantined:
            raise BlueprintQuarantined(
                f"blueprint {job.digest[:16]} is quarantined: {record.quarantine_reason}; an operator "
                f"releases it with POST /v1/admin/blueprints/{job.digest}/release once the cause is fixed",
                blueprint=job.digest, reason=record.quarantine_reason,
            )
        failed = await asyncio.to_thread(self.store.failed_tiers, job.digest, current_toolchains(), DETERMINISTIC_CODES)
        tier = job.strategy
        notes: list[str] = []
        while tier.value in failed and tier is not Strategy.EMERGENCY:
            notes.append(f"{tier.value} already failed for this blueprint under this toolchain ({failed[tier.value]})")
            tier = tier.down()
        if notes:
            self.intake.retier(job, tier, "; ".join(notes))

    async def _apply_payback(self, job: Job) -> None:
        """The job's predicted compile time (its ETA) and payback from the recorded history; a
        tier predicted to cost more than it saves is skipped (`forge/payback.py`)."""
        from tezzeret.blueprint.features import features
        from tezzeret.forge import payback

        try:
            plan = await asyncio.to_thread(
                payback.plan, self.store, features(job.ir), job.strategy, self.settings.payback, self._explore, job.target
            )
        except Exception as exc:  # noqa: BLE001 - a prediction must never refuse a submission
            log.info("payback prediction for %s failed: %s", job.digest[:16], exc)
            return
        job.prediction = plan.prediction
        for skipped in plan.skipped:
            metrics.PAYBACK_SKIPS.labels(strategy=skipped.strategy.value).inc()
        if plan.skipped:
            self.intake.retier(job, plan.strategy, "; ".join(plan.notes))
        if plan.explored:
            metrics.PAYBACK_EXPLORED.labels(strategy=plan.strategy.value).inc()
            job.strategy_reason += (
                f"; {plan.strategy.value} built although {plan.prediction.describe()}: one in "
                f"{self.settings.payback.explore_every} such jobs is, to keep measuring it (payback.explore_every)"
            )

    async def _admit(self, job: Job) -> Admission:
        running = self.registry.active(job.artifact_id)
        if running is not None:
            # The same artifact is being admitted, queued or compiled: join it once durable.
            self.cache.joined()
            if running.admitted is not None:
                await asyncio.shield(running.admitted)
            if running.status is JobStatus.FROM_CACHE:
                return Admission(running, from_cache=True)
            return Admission(running, joined=True, queue_position=self.queue.position(running.job_id))
        # Registered before the first await (the L2 probe runs in a thread), so a duplicate
        # arriving meanwhile joins this job instead of probing and compiling again.
        job.admitted = asyncio.get_running_loop().create_future()
        self.registry.activate(job)
        try:
            hit = await self.cache.lookup(job.artifact_id)
            if hit is not None and await self._intact(job.artifact_id, f"lookup_{hit.tier.lower()}"):
                self._release(job, None)
                return self._from_cache(job)
            return await self._enqueue_new(job)
        except BaseException as exc:
            self._release(job, exc)
            raise

    async def _intact(self, artifact_id: str, found_by: str) -> bool:
        """Whether the stored artifact may be served (a damaged one is quarantined, and the
        submission that asked becomes its rebuild)."""
        from tezzeret.forge.integrity import ArtifactDamaged
        from tezzeret.store import ArtifactNotFound as StoredArtifactNotFound

        try:
            await self.integrity.check(artifact_id, found_by)
        except (ArtifactDamaged, StoredArtifactNotFound):
            self.cache.invalidate(artifact_id)
            return False
        return True

    async def _on_corrupt(self, record: Any, found_by: str) -> None:
        """A corrupt artifact was found: forget it in L1, queue its rebuild from the stored IR."""
        self.cache.invalidate(record.artifact_id)
        metrics.STORE_CORRUPT_ARTIFACTS.set(len(await asyncio.to_thread(self.store.corrupt_artifacts)))
        self.audit.record(requestor="forge", action="artifact_corrupt", blueprint=record.blueprint_digest,
                          outcome="quarantined", artifact_id=record.artifact_id, found_by=found_by)
        if found_by.startswith("lookup"):
            return  # the submission that found it is admitted as the rebuild
        self._spawn(self._rebuild(record), f"rebuild-{record.artifact_id}")

    async def _rebuild(self, record: Any) -> None:
        if not self._started or self._draining:
            return
        manifest = record.manifest
        request = pb.CompilationRequest(
            schema_version=SCHEMA_VERSION, blueprint=manifest.blueprint, strategy=manifest.strategy,
            priority=pb.PRIORITY_STRATEGIC, requested_by="forge:rebuild",
        )
        try:
            await self.submit(request, "rebuild")
        except ForgeError as exc:
            log.error("rebuild of corrupt artifact %s not queued: %s", record.artifact_id, exc)

    def _release(self, job: Job, exc: BaseException | None) -> None:
        """An admission that ends without a queued job: joiners get its answer or its error."""
        self.registry.deactivate(job)
        if job.admitted is not None and not job.admitted.done():
            if exc is None:
                job.admitted.set_result(None)
            else:
                job.admitted.set_exception(exc if isinstance(exc, Exception) else IntakeClosed(
                    "the submission this one joined was cancelled before it was journaled; submit again"))
                job.admitted.exception()  # retrieved: joiners re-raise it, nobody logs it as lost

    def _from_cache(self, job: Job) -> Admission:
        job.result = self._cached_result(job)
        self.registry.add(job)
        self.registry.finish(job, JobStatus.FROM_CACHE)
        return Admission(job, from_cache=True)

    async def _enqueue_new(self, job: Job) -> Admission:
        if job.priority != pb.PRIORITY_EMERGENCY and len(self.queue) >= self.settings.compilation.max_queue_depth:
            raise QueueFull(
                f"{len(self.queue)} jobs are waiting (compilation.max_queue_depth="
                f"{self.settings.compilation.max_queue_depth}); retry later"
            )
        stage = "store"
        try:
            await asyncio.to_thread(
                self.store.put_blueprint, encode(job.ir), job.digest, name=job.name, source=job.source, state="SUBMITTED"
            )
            stage = "journal"
            sequence = await self.journal.enqueue_async(
                job.job_id, job.artifact_id, job.priority, encode(job.request),
                source=job.source, strategy_reason=job.strategy_reason,
            )
        except ForgeError:
            raise
        except Exception as exc:
            if stage == "store":
                self.breakers["store"].record_failure(f"put_blueprint: {exc}")
                raise StoreUnavailable(
                    f"the store (Urza) refused blueprint {job.digest[:16]}: {exc}; nothing was accepted, retry"
                ) from exc
            self._wal_ok = False
            raise JournalFailed(
                f"could not journal the job durably in {self.settings.wal_dir}: {exc}; nothing was accepted"
            ) from exc
        self._wal_ok = True
        job.sequence = int(sequence)
        job.enqueued_at = time.monotonic()
        self.registry.add(job)
        self.queue.push(job)
        assert job.admitted is not None
        job.admitted.set_result(None)
        metrics.QUEUE_DEPTH.set(len(self.queue))
        self.pipeline.wakeup()
        return Admission(job, queue_position=self.queue.position(job.job_id))

    def _cached_result(self, job: Job) -> pb.CompilationResult:
        rec = self.store.get_artifact(job.artifact_id)
        return pb.CompilationResult(
            schema_version=SCHEMA_VERSION,
            request_id=job.request_id,
            job_id=job.job_id,
            success=True,
            outcome=pb.OUTCOME_FROM_CACHE,
            artifact_id=job.artifact_id,
            artifact_ref=f"/v1/artifacts/{job.artifact_id}/download",
            payload_sha256=rec.file_sha256,
            blueprint_digest=job.digest,
            strategy_used=job.strategy.pb,
            from_cache=True,
        )

    def _lookup_blueprint(self, digest: str) -> pb.BlueprintIR | None:
        try:
            record = self.store.find_blueprint(digest)
        except Exception:  # noqa: BLE001 - a malformed id is simply not found
            return None
        return None if record is None else record.blueprint

    # ------------------------------------------------------------------ running a job

    async def _run_job(self, job: Job, emergency: bool) -> None:
        job.status = JobStatus.RUNNING
        job.started_at = time.time()
        metrics.QUEUE_WAIT_SECONDS.labels(priority=priority_name(job.priority)).observe(time.monotonic() - job.enqueued_at)
        t0 = time.monotonic()
        try:
            job.result, outbox = await self.runner.run(job, emergency=emergency)
        except asyncio.CancelledError:
            if job.preempted and not self._closing:
                # Gave its slot to user work; the pipeline puts it back in line (the journal has
                # it as started, exactly as after a crash).
                job.status = JobStatus.QUEUED
                job.started_at = None
                raise
            self._end_job(job)  # cut off at shutdown: the journal still says started
            raise
        except Exception:
            self._end_job(job)
            raise
        took_ms = (time.monotonic() - t0) * 1000
        if emergency or job.strategy is Strategy.EMERGENCY:
            self._emergency_ms_ema = 0.7 * self._emergency_ms_ema + 0.3 * took_ms
        if job.emergency_requests:
            metrics.EMERGENCY_DURATION_MS.observe(took_ms)
        self._end_job(job)
        await self.runner.publish(job.job_id, outbox)

    def _end_job(self, job: Job) -> None:
        if job.result is None:  # the runner itself failed: cancelled at shutdown, or a bug
            job.result = pb.CompilationResult(
                job_id=job.job_id, success=False, outcome=pb.OUTCOME_INTERNAL_ERROR,
                artifact_id=job.artifact_id, error="the job was interrupted inside the forge", error_code="INTERRUPTED",
            )
        if job.result.success:
            self.cache.remember(job.artifact_id, job.result)
        self.registry.finish(job, JobStatus.SUCCEEDED if job.result.success else JobStatus.FAILED)
        done = self._done.pop(job.job_id, None)
        if done is not None:
            done.set()

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Until the job has finished (or `timeout` seconds); raises `JobNotFound`."""
        job = self.registry.get(job_id)
        if job is None:
            raise JobNotFound(f"no job '{job_id}' (unknown, or finished and expired)", job_id=job_id)
        if not job.status.finished:
            event = self._done.setdefault(job_id, asyncio.Event())
            await asyncio.wait_for(event.wait(), timeout)
        return job

    # ------------------------------------------------------------------ emergency

    async def handle_emergency_from_bus(self, msg: pb.EmergencyCompile, caller: Any) -> pb.EmergencyAck:
        """The bus listener's handler: it has already checked the key's role, freshness, nonce and
        rate, so only the forge's own checks remain."""
        if not msg.requested_by:
            msg.requested_by = getattr(caller, "requested_by", "") or getattr(caller, "key_id", "tamiyo")
        return await self.handle_emergency(msg, rate_limited=True)

    async def handle_emergency(self, msg: pb.EmergencyCompile, *, rate_limited: bool = False) -> pb.EmergencyAck:
        """Accept (or refuse) one emergency compile and answer at once; the compile runs later on
        the reserved slot and its `CompilationComplete` goes to the emergency reply stream."""
        t0 = time.monotonic()
        request_id = msg.request_id or "em-" + new_job_id()[4:]
        prior = self._emergency_acks.get(request_id)
        if prior is not None:  # at-least-once delivery: the same request gets the same answer
            return prior

        def refuse(reason: str) -> pb.EmergencyAck:
            return pb.EmergencyAck(
                schema_version=SCHEMA_VERSION, request_id=request_id, accepted=False, reason=reason,
                acked_at_ns=time.time_ns(),
            )

        if not self.settings.compilation.enable_emergency_compilation:
            return refuse("emergency compilation is disabled (compilation.enable_emergency_compilation)")
        if not rate_limited and not self.emergency_bucket.try_take():
            return refuse(f"rate limited: more than emergency.max_per_min={self.settings.emergency.max_per_min}")
        request = pb.CompilationRequest(
            schema_version=SCHEMA_VERSION,
            request_id=request_id,
            blueprint_id=msg.blueprint_id,
            strategy=pb.STRATEGY_EMERGENCY,
            priority=pb.PRIORITY_EMERGENCY,
            requested_by=msg.requested_by or "tamiyo",
            issued_at_ns=msg.issued_at_ns,
        )
        if msg.HasField("blueprint"):
            request.blueprint.CopyFrom(msg.blueprint)
        request.options.batch_sizes.extend(msg.batch_sizes)
        if msg.target_hardware:
            request.options.target_hardware = msg.target_hardware
        try:
            self._require_open()
            job = self.intake.prepare(request, system_load=0.0, conservative_downgrade=None, source="emergency")
            await self._apply_history(job)
            if msg.deadline_ms:
                job.deadline = time.monotonic() + msg.deadline_ms / 1000.0
            sub = await self._admit(job)
        except ForgeError as exc:
            return refuse(f"{exc.code}: {exc}")
        carrier = sub.job
        if sub.from_cache or carrier.replies_sealed:
            # Done, or its events already built without this request: reply once it has ended.
            self._spawn(self._late_emergency_reply(carrier, request_id), f"emergency-reply-{request_id}")
            position, estimate = 0, 0
        else:
            carrier.emergency_requests.append(request_id)
            position = self.queue.count_at_or_above(pb.PRIORITY_EMERGENCY)
            estimate = int(self._emergency_ms_ema * (position + 1))
        ack = pb.EmergencyAck(
            schema_version=SCHEMA_VERSION,
            request_id=request_id,
            accepted=True,
            reason="from_cache" if sub.from_cache else ("joined" if sub.joined else "queued"),
            queue_position=position,
            estimate_ms=estimate,
            acked_at_ns=time.time_ns(),
        )
        self._emergency_acks.put(request_id, ack)
        metrics.EMERGENCY_ACK_MS.observe((time.monotonic() - t0) * 1000)
        return ack

    async def _late_emergency_reply(self, job: Job, request_id: str) -> None:
        if not job.status.finished:
            await self.wait(job.job_id)
        if job.result is not None:
            ev = completion_event(request_id=request_id, blueprint_id=job.digest, result=job.result, manifest=None)
            await self.publisher.emergency_reply(ev)

    def toolchain_hash(self, strategy: Strategy | int | str) -> str:
        """The current toolchain hash of one tier: what idle recompilation compares an artifact of
        that tier against (an outdated one means torch or the compile code changed)."""
        from tezzeret.compile.identity import toolchain_for_tier
        from tezzeret.compile.tiers import tier_for

        return toolchain_for_tier(tier_for(strategy)).hash()

    @property
    def last_recovery(self) -> dict[str, Any] | None:
        return self._last_recovery

    # ------------------------------------------------------------------ views

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.registry.get(job_id)
        if job is None:
            raise JobNotFound(
                f"no job '{job_id}': unknown, or finished more than memory_management.job_ttl_seconds ago",
                job_id=job_id,
            )
        return self._view(job)

    def recent_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return [self._view(j) for j in self.registry.recent(limit)]

    def _view(self, job: Job) -> dict[str, Any]:
        view = job.to_dict(self.queue.position(job.job_id))
        if job.status is JobStatus.RUNNING and not view["waiting_reason"]:
            # Dispatched, but the executor may still be waiting for a node that offers its target.
            view["waiting_reason"] = self.executor.waiting_reason(job.job_id)
        return view

    def list_artifacts(self, blueprint_id: str | None = None) -> list[dict[str, Any]]:
        self._check_started()
        return [_artifact_summary(r) for r in self.store.list_artifacts(blueprint_id or None)]

    def artifact_manifest(self, artifact_id: str) -> pb.CompiledKernelArtifact:
        self._check_started()
        rec = self.store.find_artifact(artifact_id)
        if rec is None:
            raise ArtifactNotFound(f"no artifact '{artifact_id}'", artifact_id=artifact_id)
        return rec.manifest

    async def artifact_file(self, artifact_id: str) -> Path:
        """The stored file of `artifact_id`, after its SHA-256 passed (once per process, then per
        `artifact_ttl_seconds`); `ArtifactDamaged` (quarantined, rebuild queued) when it did not."""
        from tezzeret.store import ArtifactNotFound as StoredArtifactNotFound

        self._check_started()
        try:
            record = await self.integrity.check(artifact_id, "serve")
        except StoredArtifactNotFound:
            raise ArtifactNotFound(f"no artifact '{artifact_id}'", artifact_id=artifact_id) from None
        return self.store.blobs.path_for(record.file_sha256)

    # ------------------------------------------------------------------ operator actions

    def wal_losses(self) -> list[dict[str, Any]]:
        """What WAL recovery lost and no operator has acknowledged yet (health stays DEGRADED)."""
        return [
            {"loss_id": loss.loss_id, "recorded_at": loss.recorded_at, "outcome": loss.outcome,
             "count": loss.lost_count + len(loss.in_doubt_transactions), "lost": loss.lost_count,
             "in_doubt": len(loss.in_doubt_transactions), "what": loss.describe()}
            for loss in self.wal.unacknowledged_losses()
        ]

    async def acknowledge_wal_losses(self, by: str) -> dict[str, Any]:
        """An operator has seen what WAL recovery lost: health stops reporting it (durably)."""
        self._check_started()
        acknowledged = await asyncio.to_thread(self.wal.acknowledge_losses, by)
        self.audit.record(requestor=by, action="wal_losses_acknowledged", outcome="acknowledged",
                          losses=[loss.describe() for loss in acknowledged])
        metrics.WAL_UNACKNOWLEDGED_LOSSES.set(0)
        return {"acknowledged": [loss.describe() for loss in acknowledged], "by": by}

    async def release_blueprint(self, digest: str, by: str) -> dict[str, Any]:
        """Lift a blueprint's quarantine: automatic paths may submit it again."""
        from tezzeret.store import BlueprintNotFound as StoredBlueprintNotFound

        self._check_started()
        try:
            record = await asyncio.to_thread(self.store.release_blueprint, digest)
        except StoredBlueprintNotFound:
            raise BlueprintNotFound(f"no blueprint '{digest}' in the store", blueprint=digest) from None
        self.audit.record(requestor=by, action="blueprint_released", blueprint=digest, outcome="released")
        metrics.BLUEPRINTS_QUARANTINED.set(len(await asyncio.to_thread(self.store.quarantined_blueprints)))
        return {"blueprint": record.digest, "quarantined": record.quarantined}

    async def scrub(self) -> dict[str, Any]:
        """Re-hash every stored blob now (what the background scrub does at idle)."""
        self._check_started()
        report = await self.integrity.scrub()
        return report.to_dict()

    def public_key_bytes(self) -> bytes:
        self._check_started()
        return self.key.public_key_bytes

    def _check_started(self) -> None:
        if not self._started:
            raise ForgeNotStarted("the forge is not running")

    def set_conservative(self, active: bool, reason: str) -> dict[str, Any]:
        from tezzeret.resilience import TriggerReason

        if not active:
            raise RequestInvalid(
                "conservative mode cannot be switched off by hand: it exits by itself once every "
                "breaker is CLOSED and load stays calm for timeouts_ms.conservative_mode_timeout",
                field="active",
            )
        known = [r.value for r in TriggerReason]
        if reason not in known:
            raise RequestInvalid(f"reason must be one of {known}", field="reason")
        self.conservative.trigger(reason, "admin request")
        return self.conservative.snapshot()

    def refresh_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self.queue))

    def health(self) -> HealthReport:
        """The verdict with its evidence. Never raises: a part that cannot be read (a full disk, a
        locked database) shows as unknown, and the rest still reports."""
        if not self._started:
            return assess(HealthFacts(wal_writable=False, version=__version__), sandbox_started=False)
        status = self.executor.status()
        eff = self.conservative.effective()
        store = self._store_facts
        waiting = sorted({j.waiting_reason for j in self.queue if j.waiting_reason}
                         | {str(w.get("reason")) for w in status.waiting if w.get("reason")})
        facts = HealthFacts(
            breakers={name: snap.get("state", "UNKNOWN") for name, snap in self.breakers.snapshot().items()},
            conservative_mode=self.conservative.snapshot(),
            queue_depth=len(self.queue),
            queue_by_priority=self.queue.depth_by_priority(),
            running_jobs=self.pipeline.running,
            max_concurrent_jobs=eff.max_concurrent_jobs,
            workers=_plain(status),
            isolation_level=status.isolation_level,
            wal=_safe(lambda: _wal_facts(self.wal), {}),
            wal_writable=self._wal_ok,
            wal_losses=_safe(self.wal_losses, []),
            last_recovery=self._last_recovery,
            draining=self._draining,
            dispatch_held=self.pipeline.held_reason,
            bus=_safe(lambda: _plain(self.bus.health()), {}),
            store=store,
            corrupt_artifacts=int(store.get("corrupt", 0)),
            quarantined_blueprints=int(store.get("quarantined_blueprints", 0)),
            disk=dict(self._disk),
            audit=self.audit.status(),
            cache={**self.cache.stats().as_dict(), "memory": _safe(self.memory.stats, {})},
            gpu=self._gpu_facts(),
            waiting_for_target=waiting,
            drained_nodes=[str(n.get("node_id")) for n in status.nodes if n.get("state") in ("drained", "lost")],
            uptime_s=round(time.time() - self.started_at, 1),
            version=__version__,
        )
        return assess(facts, sandbox_started=status.workers_alive > 0)

    def _gpu_facts(self) -> dict[str, Any]:
        latest = self.monitor.window.latest
        if latest is None or latest.gpu_utilization_percent is None:
            return {"present": False}
        return {"present": True, "utilization_percent": latest.gpu_utilization_percent,
                "memory_percent": latest.gpu_memory_percent}

    # ------------------------------------------------------------------ background loops

    def _compile_worker_pids(self) -> list[int]:
        """The local sandbox's worker processes (remote compile nodes use their own GPUs)."""
        pids = getattr(getattr(self, "executor", None), "worker_pids", None)
        return list(pids()) if callable(pids) else []

    async def _monitor_loop(self) -> None:
        """Every few seconds: host load to conservative mode and the GPU breaker, conservative
        mode's cache budget to the memory manager, disk space and the store's figures to health."""
        from tezzeret.resilience.gpu_share import GpuShareLimits, feed_gpu_breakers

        limits = GpuShareLimits.from_settings(self.settings, self.monitor.gpu.total_gb)

        def on_sample(sample: Any) -> None:
            self.conservative.observe(sample)
            feed_gpu_breakers(self.breakers, sample, limits)
            eff = self.conservative.effective()
            factor = self.settings.conservative_mode.settings.cache_budget_factor if eff.conservative else 1.0
            if self.memory.budget_factor != factor:
                self.memory.apply_budget_factor(factor)

        await self._look_at_disk_and_store()
        sampler = asyncio.create_task(self.monitor.run(_MONITOR_S, on_sample))
        try:
            while True:
                await asyncio.sleep(_MONITOR_S)
                await self._look_at_disk_and_store()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)

    async def _look_at_disk_and_store(self) -> None:
        workers = self.executor.status()
        metrics.SANDBOX_WORKERS.labels(state="alive").set(workers.workers_alive)
        metrics.SANDBOX_WORKERS.labels(state="busy").set(workers.workers_busy)
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.settings.state_dir)
        except OSError as exc:
            self._disk = {"error": str(exc)}
        else:
            low = self.settings.resources.min_free_disk_mb * 2**20
            self._disk = {
                "path": str(self.settings.state_dir), "free_bytes": usage.free, "total_bytes": usage.total,
                "threshold_bytes": int(low), "low": usage.free < low, "full": usage.free < low / 8,
            }
            metrics.DISK_FREE_BYTES.set(usage.free)
        try:
            self._store_facts = await asyncio.to_thread(self._read_store_facts)
        except Exception as exc:  # noqa: BLE001 - health shows what it could not read
            self._store_facts = {"error": f"{type(exc).__name__}: {exc}"}
        losses: list[dict[str, Any]] = _safe(self.wal_losses, [])
        metrics.WAL_UNACKNOWLEDGED_LOSSES.set(sum(int(loss.get("count", 0)) for loss in losses))

    def _read_store_facts(self) -> dict[str, Any]:
        artifacts = self.store.artifact_counts()
        for status, count in artifacts.items():
            metrics.STORE_ARTIFACTS.labels(status=status).set(count)
        corrupt = len(self.store.corrupt_artifacts())
        quarantined = len(self.store.quarantined_blueprints())
        size = self.store.blobs.total_bytes()
        metrics.STORE_CORRUPT_ARTIFACTS.set(corrupt)
        metrics.BLUEPRINTS_QUARANTINED.set(quarantined)
        metrics.STORE_BYTES.set(size)
        return {"blueprints": self.store.blueprint_counts(), "artifacts": artifacts, "corrupt": corrupt,
                "quarantined_blueprints": quarantined, "bytes": size,
                "last_scrub": self.integrity.last_scrub.to_dict() if self.integrity.last_scrub else None}

    async def _housekeeping_loop(self) -> None:
        """Every `memory_management.cleanup_interval_seconds` (when `ttl_cleanup_enabled`): expire
        what outlived its TTL in every in-memory map, end queued jobs past `queue_ttl_seconds`,
        and write audit lines a full disk held back."""
        mm = self.settings.memory_management
        while True:
            await asyncio.sleep(min(mm.cleanup_interval_seconds, 30.0))
            self.audit.flush()
            if not mm.ttl_cleanup_enabled or time.monotonic() - getattr(self, "_swept_at", 0.0) < mm.cleanup_interval_seconds:
                continue
            self._swept_at = time.monotonic()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad pass must not end cleanup for good
                log.exception("housekeeping pass failed; next at the next interval")

    async def sweep(self) -> dict[str, int]:
        """One TTL pass over everything the forge holds in memory; returns entries removed."""
        removed = await self.memory.sweep_async()
        removed["jobs"] = self.registry.sweep()
        removed["queue"] = await self._expire_queue()
        return removed

    async def _expire_queue(self) -> int:
        ttl = self.settings.memory_management.queue_ttl_seconds
        now = time.monotonic()
        expired = [j for j in self.queue if now - j.enqueued_at > ttl]
        for job in expired:
            self.queue.remove(job.job_id)
            job.result = pb.CompilationResult(
                schema_version=SCHEMA_VERSION, job_id=job.job_id, request_id=job.request_id, success=False,
                outcome=pb.OUTCOME_TIMEOUT, artifact_id=job.artifact_id, blueprint_digest=job.digest,
                strategy_used=job.strategy.pb, error_code="EXPIRED",
                error=f"waited longer than memory_management.queue_ttl_seconds={ttl:g} s without starting",
            )
            outbox = outbox_for(job, job.result, None)
            await self.journal.failed_async(job.job_id, job.result, outbox)
            self.audit.record(requestor=job.requested_by or job.source, action="job_expired", blueprint=job.digest,
                              outcome="expired", job_id=job.job_id)
            self._end_job(job)
            await self.runner.publish(job.job_id, outbox)
        if expired:
            metrics.QUEUE_DEPTH.set(len(self.queue))
        return len(expired)

    async def _outbox_loop(self) -> None:
        """Publish recorded events the bus did not take (Redis away, or a crash before publishing)
        until every one is acknowledged."""
        while True:
            await self._outbox_waiting.wait()
            self._outbox_waiting.clear()
            while True:
                unpublished = (await asyncio.to_thread(self.journal.state)).unpublished
                metrics.OUTBOX_PENDING.set(sum(len(v) for v in unpublished.values()))
                if not unpublished:
                    break
                sent = [await self.runner.publish(job_id, events) for job_id, events in unpublished.items()]
                if all(sent):
                    metrics.OUTBOX_PENDING.set(0)
                    break
                await asyncio.sleep(_OUTBOX_RETRY_S)

    async def _scrub_loop(self) -> None:
        """Re-hash every stored blob every `store.scrub_interval_s`, only while no user work
        waits or runs, and queue rebuilds for what it finds."""
        interval = self.settings.store.scrub_interval_s
        if interval <= 0:
            return
        await asyncio.sleep(min(interval, 60.0))
        while True:
            try:
                await self.integrity.scrub(pause=lambda: not self.pipeline.idle)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed scrub is retried at the next interval
                log.exception("store scrub failed")
            await asyncio.sleep(interval)


def _artifact_summary(rec: Any) -> dict[str, Any]:
    m = rec.manifest
    return {
        "artifact_id": rec.artifact_id,
        "blueprint_digest": rec.blueprint_digest,
        "blueprint_name": m.blueprint.metadata.name,
        "strategy": rec.strategy,
        "target": rec.target,
        "toolchain_hash": rec.toolchain_hash,
        "status": rec.status,
        "file_sha256": rec.file_sha256,
        "size": rec.file_size,
        "compile_ms": m.stats.compile_ms,
        "speedup_fwd": m.stats.speedup_fwd,
        "speedup_train": m.stats.speedup_train,
        "created_at_ns": rec.created_at_ns,
    }


def check_wal_filesystem(settings: Settings) -> None:
    """`wal.filesystem_type` (ext4 or xfs) is a promise about the WAL's disk: refuse to start on
    another filesystem rather than run with durability assumptions that do not hold."""
    from tezzeret.errors import ConfigError
    from tezzeret.wal.mounts import check_directory

    wanted = settings.wal.filesystem_type
    if wanted == "auto":
        return
    settings.wal_dir.mkdir(parents=True, exist_ok=True)
    mount = check_directory(settings.wal_dir).mount
    actual = mount.fs_type if mount is not None else "unknown"
    if actual != wanted:
        raise ConfigError([(
            "wal.filesystem_type",
            f"is {wanted}, but {settings.wal_dir} is on {actual}; move wal.path to {wanted} or set it to auto",
        )])


def _safe(read: Callable[[], T], default: Any) -> T:
    """`read()`, or `default` when it raises: health must answer whatever one part does."""
    try:
        return read()
    except Exception:  # noqa: BLE001
        log.debug("health: a fact could not be read", exc_info=True)
        return default


def _plain(value: Any) -> Any:
    """A JSON-ready form of a dataclass / pydantic model / dict from another stage."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and hasattr(value, "name"):
        return value.value
    return str(value)


def _wal_facts(wal: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in ("path", "size_bytes", "sequence", "epoch", "last_checkpoint"):
        if hasattr(wal, attr):
            v = getattr(wal, attr)
            out[attr] = _plain(v() if callable(v) else v)
    return out
