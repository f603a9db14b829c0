"""The `Forge`: Tezzeret as one running service. It owns and wires every part.

Owns: start-up (config → breakers, conservative mode, WAL + job journal, store, signing key, bus,
sandbox; then WAL recovery rebuilds the queue), the path of one submission (intake → validate →
artifact id → L1 in-flight / L2 store → store the blueprint → journal (durable before the answer)
→ queue → PipelineManager → claim → sandbox → outcome to breakers → sign → WAL BEGIN → store →
WAL COMMIT → journal finished → publish), the emergency path, job/artifact views and shutdown.
Must never compile in this process (the sandbox does), never hand the signing key to a worker,
and never await a compile while answering a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tezzeret import __version__, metrics
from tezzeret.config import Settings
from tezzeret.forge import execution
from tezzeret.forge.errors import (
    ArtifactNotFound,
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
from tezzeret.forge.intake import Intake, Prepared, new_job_id
from tezzeret.forge.jobs import JobRegistry, JobStatus, JobView
from tezzeret.forge.pipeline import PipelineManager
from tezzeret.forge.publish import Publisher, completion_event
from tezzeret.forge.queue import PriorityJobQueue, QueuedJob
from tezzeret.forge.strategy import name_of, to_pb
from tezzeret.leyline import SCHEMA_VERSION, decode, encode, pb, to_json

log = logging.getLogger(__name__)


@dataclass
class Submission:
    """The answer to one submission: which job carries it, and whether it was already done."""

    job_id: str
    artifact_id: str
    blueprint_digest: str
    blueprint_name: str
    strategy: str
    priority: str
    status: str
    from_cache: bool = False
    joined: bool = False
    queue_position: int | None = None
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class InFlight:
    """L1: one artifact id being built. Later duplicates join it instead of compiling again."""

    job_id: str
    # Resolved once the job is journaled: a duplicate is answered only when the work is durable.
    durable: asyncio.Future[None]
    emergency_requests: list[str] = field(default_factory=list)
    # Set when the lookup found the artifact already built: joiners are answered from cache.
    cached_job_id: str | None = None


class Forge:
    """The service. `await start()`, then submit/inspect; `await close()` to stop."""

    def __init__(self, settings: Settings, *, instance_id: str | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        self._started = False
        self._closing = False
        self._draining = False
        self.registry = JobRegistry(
            ttl_s=settings.memory_management.job_ttl_seconds,
            max_finished=settings.memory_management.max_entries_per_cache,
        )
        self.queue: PriorityJobQueue[Prepared] = PriorityJobQueue(
            aging_interval_s=settings.compilation.aging_interval_s
        )
        self._inflight: dict[str, InFlight] = {}
        # Digests between "stored" and "queued" in `_admit`, so polling does not submit them twice.
        self.admitting: set[str] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._emergency_acks: dict[str, pb.EmergencyAck] = {}
        self._emergency_ms_ema = 2000.0
        self._last_recovery: dict[str, Any] | None = None
        self._wal_ok = True
        self._waiting_on_breaker = False
        self.jobs_dir = settings.state_dir / "jobs"
        from tezzeret.forge.audit import AuditLog

        self.audit = AuditLog(settings.audit_log_path)

    # ------------------------------------------------------------------ start / stop

    async def start(self) -> "Forge":
        from tezzeret.bus import make_bus
        from tezzeret.bus.ratelimit import TokenBucket
        from tezzeret.resilience import (
            BreakerRegistry,
            ConservativeModeController,
            MonotonicClock,
            ResourceMonitor,
        )
        from tezzeret.sandbox import SandboxExecutor
        from tezzeret.store import SigningKey, Store
        from tezzeret.wal import JobJournal, Wal

        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.clock = MonotonicClock()
        self.breakers = BreakerRegistry.from_settings(s, self.clock)
        self.conservative = ConservativeModeController(s, self.breakers, self.clock)
        self.monitor = ResourceMonitor(self.clock)
        self.emergency_bucket = TokenBucket(s.emergency.max_per_min)
        t0 = time.monotonic()
        self.wal = await asyncio.to_thread(Wal.open, s.wal_dir, s.wal)
        self.journal = JobJournal(self.wal)
        wal_open_s = time.monotonic() - t0
        self.store = await asyncio.to_thread(Store.open, s.store_dir)
        self.key = await asyncio.to_thread(SigningKey.load_or_create, s.key_dir)
        self.intake = Intake(s, self._lookup_blueprint)
        from tezzeret.cache import CompileCache, store_l2

        self.cache: CompileCache[Any] = CompileCache.from_settings(s, l2=store_l2(self.store))
        self.bus = make_bus(s, self.breakers)
        from tezzeret.forge.bus_intake import BusIntake

        self.bus_intake = BusIntake(self)
        self.bus_intake.subscribe()
        await self.bus.start()
        self.publisher = Publisher(self.bus)
        self.sandbox = SandboxExecutor(s)
        await self.sandbox.start()
        self.pipeline = PipelineManager(
            self.queue,
            capacity=lambda: self.conservative.effective().max_concurrent_jobs,
            runner=self._run_job,
            emergency_slot=s.emergency.reserved_worker,
            hold=self._dispatch_hold,
        )
        await self._recover(wal_open_s)
        self._started = True
        self.pipeline.start()
        self._spawn(self._monitor_loop(), "resource-monitor")
        from tezzeret.forge.idle import IdleRecompiler
        from tezzeret.forge.polling import UrzaPoller

        self.poller = UrzaPoller(self)
        self.idle = IdleRecompiler(self)
        self._spawn(self.poller.run(), "urza-polling")
        self._spawn(self.idle.run(), "idle-recompilation")
        return self

    def active_digests(self) -> set[str]:
        """Blueprints with a job that has not finished (or is being admitted right now)."""
        return set(self.admitting) | {j.blueprint_digest for j in self.registry.unfinished()}

    def _dispatch_hold(self) -> str | None:
        # Urza's breaker open: compiling now would only produce artifacts that cannot be stored.
        # Work stays queued (and journaled) until a probe may go through.
        from tezzeret.resilience import BreakerState

        if self.breakers["store"].state is BreakerState.OPEN:
            return "store breaker OPEN"
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
            await self.sandbox.close(min(grace, 5.0))
            await self.bus.close()
            await asyncio.to_thread(self.wal.close)
            await asyncio.to_thread(self.store.close)
            self.monitor.close()
        self.audit.close()
        self._started = False
        for fut in self._inflight.values():
            if not fut.durable.done():
                fut.durable.set_exception(IntakeClosed("the forge stopped"))
                fut.durable.exception()
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
        # Pending work is in priority+FIFO order; jobs running at the crash are already among it.
        for rec in state.already_completed:
            result = self.journal.result_for(rec.artifact_id) or pb.CompilationResult(
                job_id=rec.job_id, success=True, outcome=pb.OUTCOME_FROM_CACHE, artifact_id=rec.artifact_id, from_cache=True
            )
            result.job_id = rec.job_id
            await self.journal.finished_async(rec.job_id, result)
        ordered = sorted([*state.pending, *state.in_flight], key=lambda j: (j.priority, j.sequence))
        for rec in ordered:
            try:
                request = decode(pb.CompilationRequest, rec.request)
                prepared = self.intake.restore(request)
            except Exception as exc:  # noqa: BLE001 - an unreadable record must not stop start-up
                log.error("journal record for job %s is unusable (%s); marking it failed", rec.job_id, exc)
                await self.journal.failed_async(
                    rec.job_id,
                    pb.CompilationResult(job_id=rec.job_id, success=False, outcome=pb.OUTCOME_INTERNAL_ERROR, error=str(exc)),
                )
                continue
            job = self._view(prepared, rec.job_id, source="recovered", sequence=rec.sequence)
            if await asyncio.to_thread(self.store.has_artifact, prepared.artifact_id):
                # Stored and committed before the crash, journal not yet told: finish, don't rebuild.
                result = self._cached_result(job, prepared)
                await self.journal.finished_async(rec.job_id, result)
                await asyncio.to_thread(self._mark_compiled, prepared.digest)
                job.result = result
                self.registry.add(job)
                self.registry.finish(job, JobStatus.SUCCEEDED)
                finished_from_store += 1
                continue
            if prepared.artifact_id in self._inflight:
                continue
            self.registry.add(job)
            self._inflight[prepared.artifact_id] = InFlight(rec.job_id, self._resolved_future())
            self.queue.push(QueuedJob(rec.job_id, prepared.artifact_id, prepared.priority, rec.sequence, time.monotonic(), prepared))
            requeued += 1
        # Finished jobs stay visible through `GET /v1/jobs/{id}` across restarts.
        for results, status in ((state.completed, JobStatus.SUCCEEDED), (state.failures, JobStatus.FAILED)):
            for artifact_id, result in results.items():
                if not result.job_id or self.registry.get(result.job_id) is not None:
                    continue
                self.registry.add(self._view_from_result(artifact_id, result, status))
        # Blueprints claimed by a previous (crashed) instance go back to SUBMITTED.
        released = await asyncio.to_thread(self.store.release_claims)
        report = getattr(self.wal, "recovery", None)
        self._last_recovery = {
            "wal": report.to_dict() if hasattr(report, "to_dict") else _plain(report),
            "requeued_jobs": requeued,
            "finished_from_store": finished_from_store,
            "completed_artifacts": len(state.completed),
            "answered_from_journal": len(state.already_completed),
            "released_claims": len(released),
            "duration_ms": round((time.monotonic() - t0 + open_s) * 1000, 1),
        }
        metrics.QUEUE_DEPTH.set(len(self.queue))
        log.info("recovery: %s", self._last_recovery)

    def _mark_compiled(self, digest: str) -> None:
        record = self.store.find_blueprint(digest)
        if record is not None and record.state == "COMPILING":
            self.store.transition(digest, "COMPILED", actor=self.instance_id)

    def _view_from_result(self, artifact_id: str, result: pb.CompilationResult, status: JobStatus) -> JobView:
        record = self.store.find_blueprint(result.blueprint_digest) if result.blueprint_digest else None
        job = JobView(
            job_id=result.job_id,
            artifact_id=artifact_id,
            blueprint_digest=result.blueprint_digest,
            blueprint_name=record.name if record is not None else result.blueprint_digest[:16],
            strategy=name_of(result.strategy_used) if result.strategy_used else "",
            priority="",
            status=status,
            request_id=result.request_id,
            source="journal",
            result=result,
            error=result.error or None,
            error_code=result.error_code or None,
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
        return lambda strategy: to_pb(eff.downgrade(name_of(strategy)))

    async def submit(self, request: pb.CompilationRequest, *, source: str = "api") -> Submission:
        """Validate, dedupe, journal and queue one request. Returns once the job is durable."""
        self._require_open()
        prepared = self.intake.prepare(
            request, system_load=self.system_load(), conservative_downgrade=self._downgrade()
        )
        return await self._admit(prepared, source)

    async def _admit(self, p: Prepared, source: str) -> Submission:
        from tezzeret.cache import CacheHit, Miss

        inflight = self._inflight.get(p.artifact_id)
        if inflight is not None:
            # The same artifact is being admitted, queued or compiled: join it once durable.
            await asyncio.shield(inflight.durable)
            if inflight.cached_job_id is not None:
                return self._from_cache(p, source)
            return self._submission(self.registry.get(inflight.job_id), p, joined=True)
        # Ours is registered before the first await (the cache's L2 probe runs in a thread), so a
        # duplicate arriving meanwhile joins here; ours also knows jobs rebuilt by recovery.
        job_id = new_job_id()
        entry = InFlight(job_id, asyncio.get_running_loop().create_future())
        self._inflight[p.artifact_id] = entry
        try:
            lookup = await self.cache.lookup_or_join(p.artifact_id)
        except BaseException as exc:
            self._release_entry(p.artifact_id, entry, exc)
            raise
        if isinstance(lookup, Miss):
            return await self._enqueue_new(p, source, lookup, entry)
        if isinstance(lookup, CacheHit):
            entry.cached_job_id = job_id
            self._inflight.pop(p.artifact_id, None)
            entry.durable.set_result(None)
            return self._from_cache(p, source)
        # The cache has a compile of this id that we do not: only a request racing our own job's
        # end can see that. Its outcome is moments away; answer from it.
        try:
            await lookup.result(timeout=60)
        except Exception as exc:  # noqa: BLE001
            self._release_entry(p.artifact_id, entry, exc)
            raise ForgeError(f"the compile this request joined failed: {exc}", code="JOINED_COMPILE_FAILED") from None
        entry.cached_job_id = job_id
        self._inflight.pop(p.artifact_id, None)
        entry.durable.set_result(None)
        return self._from_cache(p, source)

    def _release_entry(self, artifact_id: str, entry: InFlight, exc: BaseException) -> None:
        if self._inflight.get(artifact_id) is entry:
            del self._inflight[artifact_id]
        if not entry.durable.done():
            entry.durable.set_exception(exc if isinstance(exc, Exception) else IntakeClosed("cancelled"))
            entry.durable.exception()  # retrieved: joiners re-raise it, nobody logs it as lost

    def _from_cache(self, p: Prepared, source: str) -> Submission:
        job = self._view(p, new_job_id(), source=source)
        job.result = self._cached_result(job, p)
        self.registry.add(job)
        self.registry.finish(job, JobStatus.FROM_CACHE)
        return self._submission(job, p, from_cache=True)

    async def _enqueue_new(self, p: Prepared, source: str, miss: Any, entry: InFlight) -> Submission:
        job_id = entry.job_id
        if p.priority != pb.PRIORITY_EMERGENCY and len(self.queue) >= self.settings.compilation.max_queue_depth:
            err = QueueFull(
                f"{len(self.queue)} jobs are waiting (compilation.max_queue_depth="
                f"{self.settings.compilation.max_queue_depth}); retry later"
            )
            miss.fail(err)
            self._release_entry(p.artifact_id, entry, err)
            raise err
        self.admitting.add(p.digest)
        stage = "store"
        try:
            await asyncio.to_thread(
                self.store.put_blueprint, encode(p.ir), p.digest, name=p.name, source=source, state="SUBMITTED"
            )
            stage = "journal"
            sequence = await self.journal.enqueue_async(job_id, p.artifact_id, p.priority, encode(p.request))
        except BaseException as exc:
            # Including cancellation: joiners must never wait on an entry nobody will resolve.
            miss.fail(exc if isinstance(exc, Exception) else IntakeClosed("the submission was cancelled"))
            self._release_entry(p.artifact_id, entry, exc)
            if isinstance(exc, ForgeError) or not isinstance(exc, Exception):
                raise
            if stage == "store":
                self.breakers["store"].record_failure(f"put_blueprint: {exc}")
                raise StoreUnavailable(
                    f"the store (Urza) refused blueprint {p.digest[:16]}: {exc}; nothing was accepted, retry"
                ) from exc
            self._wal_ok = False
            raise JournalFailed(
                f"could not journal the job durably in {self.settings.wal_dir}: {exc}; nothing was accepted"
            ) from exc
        finally:
            self.admitting.discard(p.digest)
        self._wal_ok = True
        job = self._view(p, job_id, source=source, sequence=int(sequence))
        self.registry.add(job)
        self.queue.push(QueuedJob(job_id, p.artifact_id, p.priority, int(sequence), time.monotonic(), p))
        entry.durable.set_result(None)
        metrics.QUEUE_DEPTH.set(len(self.queue))
        self.pipeline.wakeup()
        return self._submission(job, p)

    def _view(self, p: Prepared, job_id: str, *, source: str, sequence: int = 0) -> JobView:
        summary = pb.CompilationRequest()
        summary.CopyFrom(p.request)
        summary.ClearField("blueprint")
        return JobView(
            request=json.loads(to_json(summary)),
            job_id=job_id,
            artifact_id=p.artifact_id,
            blueprint_digest=p.digest,
            blueprint_name=p.name,
            strategy=name_of(p.strategy),
            strategy_reason=p.decision.reason,
            priority=pb.CompilationPriority.Name(p.priority).removeprefix("PRIORITY_"),
            status=JobStatus.QUEUED,
            requested_by=p.request.requested_by,
            request_id=p.request.request_id,
            source=source,
            sequence=sequence,
        )

    def _submission(self, job: JobView | None, p: Prepared, *, from_cache: bool = False, joined: bool = False) -> Submission:
        if job is None:  # evicted between join and answer: the work is done
            return Submission("", p.artifact_id, p.digest, p.name, name_of(p.strategy), "", "SUCCEEDED", True, joined)
        return Submission(
            job_id=job.job_id,
            artifact_id=job.artifact_id,
            blueprint_digest=job.blueprint_digest,
            blueprint_name=job.blueprint_name,
            strategy=job.strategy,
            priority=job.priority,
            status=job.status.value,
            from_cache=from_cache,
            joined=joined,
            queue_position=self.queue.position(job.job_id),
            request_id=p.request.request_id,
        )

    def _cached_result(self, job: JobView, p: Prepared) -> pb.CompilationResult:
        rec = self.store.get_artifact(p.artifact_id)
        return pb.CompilationResult(
            schema_version=SCHEMA_VERSION,
            request_id=p.request.request_id,
            job_id=job.job_id,
            success=True,
            outcome=pb.OUTCOME_FROM_CACHE,
            artifact_id=p.artifact_id,
            artifact_ref=f"/v1/artifacts/{p.artifact_id}/download",
            payload_sha256=rec.file_sha256,
            blueprint_digest=p.digest,
            strategy_used=p.strategy,
            from_cache=True,
        )

    def _lookup_blueprint(self, digest: str) -> pb.BlueprintIR | None:
        try:
            record = self.store.find_blueprint(digest)
        except Exception:  # noqa: BLE001 - a malformed id is simply not found
            return None
        return None if record is None else record.blueprint

    # ------------------------------------------------------------------ running a job

    async def _run_job(self, qjob: QueuedJob[Prepared], emergency: bool) -> None:
        job = self.registry.get(qjob.job_id)
        if job is None:  # cannot happen: queued jobs are never evicted
            return
        try:
            await execution.run(self, qjob.payload, job, emergency=emergency)
        finally:
            entry = self._inflight.pop(qjob.artifact_id, None)
            if job.status == JobStatus.SUCCEEDED:
                self.cache.complete(qjob.artifact_id, job.result)
            else:
                self.cache.fail(qjob.artifact_id, ForgeError(job.error or "compile failed", code=job.error_code or "COMPILE_FAILED"))
            if entry is not None and entry.emergency_requests and job.result is not None:
                for request_id in entry.emergency_requests:
                    ev = completion_event(
                        request_id=request_id, blueprint_id=job.blueprint_digest, result=job.result, manifest=None
                    )
                    await self.publisher.emergency_reply(ev)
            done = self._done.pop(job.job_id, None)
            if done is not None:
                done.set()

    async def wait(self, job_id: str, timeout: float | None = None) -> JobView:
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
            prepared = self.intake.prepare(request, system_load=0.0, conservative_downgrade=None)
            sub = await self._admit(prepared, "emergency")
        except ForgeError as exc:
            return refuse(f"{exc.code}: {exc}")
        if sub.from_cache:
            job = self.registry.get(sub.job_id)
            if job is not None and job.result is not None:
                ev = completion_event(request_id=request_id, blueprint_id=sub.blueprint_digest, result=job.result, manifest=None)
                self._spawn(self.publisher.emergency_reply(ev), f"emergency-reply-{request_id}")
            position, estimate = 0, 0
        else:
            entry = self._inflight.get(sub.artifact_id)
            if entry is not None and entry.job_id == sub.job_id:
                entry.emergency_requests.append(request_id)
            else:
                # The job it joined ended while we answered: reply with its result now.
                job = self.registry.get(sub.job_id)
                if job is not None and job.result is not None:
                    ev = completion_event(request_id=request_id, blueprint_id=sub.blueprint_digest, result=job.result, manifest=None)
                    self._spawn(self.publisher.emergency_reply(ev), f"emergency-reply-{request_id}")
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
        if len(self._emergency_acks) > 10_000:
            self._emergency_acks.clear()
        self._emergency_acks[request_id] = ack
        metrics.EMERGENCY_ACK_MS.observe((time.monotonic() - t0) * 1000)
        return ack

    @property
    def toolchain_hash(self) -> str:
        """The FAST tier's current toolchain hash: what idle recompilation compares stored
        artifacts against (each tier has its own; an outdated one means torch or the compile code
        changed, which changes them all)."""
        from tezzeret.compile.compile import toolchain_for_tier
        from tezzeret.compile.tiers import tier_for

        return toolchain_for_tier(tier_for(pb.STRATEGY_FAST)).hash()

    @property
    def last_recovery(self) -> dict[str, Any] | None:
        return self._last_recovery

    def note_emergency_duration(self, ms: float) -> None:
        self._emergency_ms_ema = 0.7 * self._emergency_ms_ema + 0.3 * ms

    # ------------------------------------------------------------------ views

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.registry.get(job_id)
        if job is None:
            raise JobNotFound(
                f"no job '{job_id}': unknown, or finished more than memory_management.job_ttl_seconds ago",
                job_id=job_id,
            )
        return job.to_dict(self.queue.position(job_id))

    def recent_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return [j.to_dict(self.queue.position(j.job_id)) for j in self.registry.recent(limit)]

    def list_artifacts(self, blueprint_id: str | None = None) -> list[dict[str, Any]]:
        self._check_started()
        return [_artifact_summary(r) for r in self.store.list_artifacts(blueprint_id or None)]

    def artifact_manifest(self, artifact_id: str) -> pb.CompiledKernelArtifact:
        self._check_started()
        rec = self.store.find_artifact(artifact_id)
        if rec is None:
            raise ArtifactNotFound(f"no artifact '{artifact_id}'", artifact_id=artifact_id)
        return rec.manifest

    def artifact_path(self, artifact_id: str) -> Path:
        self._check_started()
        if self.store.find_artifact(artifact_id) is None:
            raise ArtifactNotFound(f"no artifact '{artifact_id}'", artifact_id=artifact_id)
        return self.store.artifact_path(artifact_id)

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
        if not self._started:
            return assess(HealthFacts(wal_writable=False, version=__version__), sandbox_started=False)
        sandbox_status = _plain(self.sandbox.status())
        eff = self.conservative.effective()
        facts = HealthFacts(
            breakers={name: snap.get("state", "UNKNOWN") for name, snap in self.breakers.snapshot().items()},
            conservative_mode=self.conservative.snapshot(),
            queue_depth=len(self.queue),
            queue_by_priority=self.queue.depth_by_priority(),
            running_jobs=self.pipeline.running,
            max_concurrent_jobs=eff.max_concurrent_jobs,
            workers=sandbox_status if isinstance(sandbox_status, dict) else {"status": sandbox_status},
            isolation_level=str(getattr(self.sandbox, "isolation_level", "unknown")),
            wal=_wal_facts(self.wal),
            wal_writable=self._wal_ok,
            last_recovery=self._last_recovery,
            draining=self._draining,
            dispatch_held=self.pipeline.held_reason,
            bus=_plain(self.bus.health()),
            store={"blueprints": self.store.blueprint_counts(), "artifacts": self.store.artifact_counts()},
            uptime_s=round(time.time() - self.started_at, 1),
            version=__version__,
        )
        alive = getattr(self.sandbox.status(), "workers_alive", 1)
        return assess(facts, sandbox_started=alive > 0)

    # ------------------------------------------------------------------ background loops

    async def _monitor_loop(self) -> None:
        def on_sample(sample: Any) -> None:
            self.conservative.observe(sample)

        await self.monitor.run(5.0, on_sample)

    def cleanup_job_dir(self, job_id: str) -> None:
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)


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
