"""The SandboxExecutor: a pool of pre-warmed, isolated worker processes that run jobs one at a time.

Owns: the worker slots (under the isolation level chosen at start), the per-job directory and its
files, the limits each job carries to its worker, the wall-clock timeout and SIGKILL of the sandbox,
recycling after `sandbox.max_jobs_per_worker` jobs or any failure, the reserved emergency slot,
the CPU-only retry after a crash, each worker's L3 cache environment (and its relay to the L3
Redis, `l3relay`), and reporting every ended job to `on_result`. It must never
import the forge or the API, never compile anything in the service process, and never raise for a
job that failed: every job ends as exactly one `pb.JobOutcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tezzeret import metrics
from tezzeret.compile.task import RECYCLE_DETAIL
from tezzeret.config import Settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox import isolation, limits, outcome, results, throttle
from tezzeret.sandbox.errors import ExecutorNotRunning, TaskSpecInvalid, WorkerStartFailed
from tezzeret.sandbox.l3relay import L3Relay, relayable
from tezzeret.sandbox.process import WorkerProcess, sweep_leftovers
from tezzeret.sandbox.status import SandboxStatus

log = logging.getLogger("tezzeret.sandbox")

DEFAULT_TASKS: Mapping[str, str] = {"compile": "tezzeret.compile.task:run_compile_task"}
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TASK_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_WORKER_USER = "tezzeret-sandbox"
# Outputs a job may hand back: the artifact plus anything next to it (e.g. an inference .pt2).
_MAX_EXPORT_BYTES = 2 * 1024 * 1024 * 1024

OnResult = Callable[[pb.WorkerJob, pb.WorkerResult], None]


@dataclass
class _Slot:
    index: int
    emergency: bool
    worker: WorkerProcess | None = None
    spawning: asyncio.Task[WorkerProcess] | None = None
    busy: bool = False


@dataclass
class _Attempt:
    result: pb.WorkerResult
    recycle: bool


class SandboxExecutor:
    """Runs `pb.WorkerJob`s in sandboxed, pre-warmed worker processes.

    `tasks` maps `WorkerJob.task` to `"module:function"` (`fn(job, job_dir) -> pb.WorkerResult`);
    workers import only these. `extra_sys_path` is prepended to the workers' `sys.path` (and made
    readable inside the sandbox) for task modules outside the installed package. `warm` says what a
    worker imports before it reports ready: "inductor" (torch, Dynamo, Inductor: what compile jobs
    need), "torch" (for tasks that never compile), or "none" (one-shot runs).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tasks: Mapping[str, str] | None = None,
        on_result: OnResult | None = None,
        extra_sys_path: Sequence[Path] = (),
        warm: Literal["inductor", "torch", "none"] = "inductor",
    ) -> None:
        self.settings = settings
        self.warm = warm
        self.tasks = dict(DEFAULT_TASKS if tasks is None else tasks)
        for name, spec in self.tasks.items():
            if not re.match(r"^[A-Za-z0-9_.-]+$", name) or not _TASK_SPEC.match(spec):
                raise TaskSpecInvalid(f"task {name!r} -> {spec!r}: expected name -> 'package.module:function'")
        self.on_result = on_result
        self.extra_sys_path = [Path(p).resolve() for p in extra_sys_path]
        self.isolation_level = "unstarted"
        self._isolation: isolation.Isolation | None = None
        self._skipped: list[str] = []
        self._drop_uid: int | None = None
        self._root = settings.state_dir / "sandbox"
        self._slots: list[_Slot] = []
        self._free: asyncio.Queue[_Slot] | None = None
        self._free_emergency: asyncio.Queue[_Slot] | None = None
        self._generation = itertools.count()
        self._jobs_run = 0
        self._recycled = 0
        self._running = False
        self._in_flight = 0
        self._last_spawn_error: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._throttle: throttle.ContentionThrottle | None = None
        self._throttle_note = "not started"
        # Each live worker's relay to the L3 Redis, by its workdir (see `l3relay`).
        self._relays: dict[Path, L3Relay] = {}

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Choose the isolation level, then spawn and pre-warm every worker (waits until ready)."""
        level, skipped = await asyncio.to_thread(isolation.choose_level, self.settings.sandbox.isolation)
        readable = isolation.interpreter_paths(self.extra_sys_path)
        self._drop_uid = self.settings.sandbox.worker_uid if isolation.can_drop_uid(level, readable) else None
        self._isolation = isolation.describe(level, drops_uid=self._drop_uid is not None)
        self.isolation_level = level
        self._skipped = skipped
        self._readable = readable
        log_fn = log.info if level == "bwrap" else log.warning
        log_fn(
            "sandbox isolation: %s (worker uid %s)%s%s",
            level,
            self._drop_uid if self._drop_uid is not None else os.geteuid(),
            f"; {self._isolation.note}" if self._isolation.note else "",
            f"; stronger levels unavailable: {'; '.join(skipped)}" if skipped else "",
        )
        self._prepare_dirs()
        await self._start_throttle()
        count = self.settings.compile_slots()
        self._slots = [_Slot(i, emergency=False) for i in range(count)]
        if self.settings.emergency.reserved_worker:
            self._slots.append(_Slot(count, emergency=True))
        self._free = asyncio.Queue()
        self._free_emergency = asyncio.Queue()
        spawns = [self._spawn(slot) for slot in self._slots]
        workers = await asyncio.gather(*spawns, return_exceptions=True)
        failures = [w for w in workers if isinstance(w, BaseException)]
        for slot, worker in zip(self._slots, workers):
            if isinstance(worker, WorkerProcess):
                slot.worker = worker
        if failures:
            await self._kill_all()
            await self._stop_throttle()
            raise WorkerStartFailed(f"{len(failures)} of {len(self._slots)} sandbox workers failed to start: {failures[0]}")
        for slot in self._slots:
            (self._free_emergency if slot.emergency else self._free).put_nowait(slot)
        self._running = True

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking jobs, let running ones finish for up to `grace_s`, then kill every worker."""
        grace = self.settings.sandbox.grace_period_s if grace_s is None else grace_s
        self._running = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._kill_all()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._kill_all()
        await self._stop_throttle()

    async def _start_throttle(self) -> None:
        """The CPU cap for general workers while other processes keep the host busy (see
        `throttle`); where no cgroup can be made, run without it and say so."""
        sb = self.settings.sandbox
        if sb.contended_cpu_quota <= 0:
            self._throttle_note = "off: sandbox.contended_cpu_quota is 0"
            return
        name = f"tezzeret-sandbox-{os.getpid()}-{id(self):x}"
        group, why = await asyncio.to_thread(throttle.WorkerCgroup.create, name, sb.throttle_period_ms * 1000)
        if group is None:
            self._throttle_note = f"unavailable: {why}"
            log.warning("sandbox CPU cap unavailable (%s): compile workers may slow training processes on this host", why)
            return
        self._throttle = throttle.ContentionThrottle(
            group, quota_cores=sb.contended_cpu_quota, threshold_cores=self.settings.contention_threshold()
        )
        self._throttle.start()
        log.info("sandbox CPU cap: %g cores while other processes use %g or more (cgroup v%d)",
                 sb.contended_cpu_quota, self._throttle.threshold_cores, group.version)

    async def _stop_throttle(self) -> None:
        if self._throttle is not None:
            await self._throttle.stop()
            self._throttle = None
            self._throttle_note = "stopped"

    async def _answer(self, worker: WorkerProcess, timeout_s: float, capped: bool, waited: list[float]) -> bytes:
        """The worker's control line within `timeout_s`. While the CPU cap is on, a second of wall
        time counts only as the share of a core the job was allowed: the limit is there to catch
        hung or runaway jobs, not to fail jobs the cap slowed down on purpose. `waited` gets the
        wall seconds spent under the cap."""
        if self._throttle is None or not capped:
            return await worker.read_line(timeout_s)
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(worker.read_line(None))
        used = 0.0
        try:
            while True:
                rate = self._throttle.rate(sum(1 for s in self._slots if s.busy and not s.emergency))
                started = loop.time()
                done, _ = await asyncio.wait({reader}, timeout=min(1.0, max(0.01, (timeout_s - used) / rate)))
                if rate < 1.0:
                    waited[0] += loop.time() - started
                if done:
                    return reader.result()
                used += (loop.time() - started) * rate
                if used >= timeout_s:
                    raise asyncio.TimeoutError
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    async def __aenter__(self) -> SandboxExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(0)

    def waiting_reason(self, job_id: str) -> str | None:
        """A local job waits only for a free worker, which the queue position already says."""
        return None

    def status(self) -> SandboxStatus:
        iso = self._isolation
        return SandboxStatus(
            isolation_level=self.isolation_level,
            isolation_note=iso.note if iso else "",
            skipped_levels=list(self._skipped),
            net_isolated=bool(iso and iso.net_isolated),
            fs_readonly=bool(iso and iso.fs_readonly),
            nproc_enforced=bool(iso and iso.nproc_enforced),
            worker_uid=self._drop_uid,
            workers_alive=sum(1 for s in self._slots if s.worker and s.worker.alive),
            workers_busy=sum(1 for s in self._slots if s.busy),
            slots=len(self._slots),
            emergency_slot=any(s.emergency for s in self._slots),
            jobs_run=self._jobs_run,
            recycled=self._recycled,
            last_spawn_error=self._last_spawn_error,
            throttle=self._throttle.snapshot() if self._throttle else {"off": self._throttle_note},
        )

    def worker_pids(self) -> list[int]:
        """Host pids of the live worker interpreters (for monitoring and tests)."""
        return [s.worker.pid for s in self._slots if s.worker and s.worker.alive]

    async def wait_ready(self) -> None:
        """Wait until every slot has a live worker (after recycling)."""
        for slot in self._slots:
            await self._ready_worker(slot)

    # ----------------------------------------------------------------------------- running jobs

    async def run(self, job: pb.WorkerJob, *, emergency: bool = False) -> pb.WorkerResult:
        """Run one job to its end; never raises for a job failure.

        A crash (signal) of a job not already CPU-only is retried once with `cpu_only = True`;
        the result then says so in `details` (`retried_cpu_only`, `first_attempt`).
        """
        if not self._running:
            raise ExecutorNotRunning("the sandbox executor is not running: call `await executor.start()` first")
        if not _JOB_ID.match(job.job_id or ""):
            result = outcome.result_for(
                job.job_id, pb.OUTCOME_REJECTED,
                f"job id {job.job_id!r} is not 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit",
                [], error_code="SANDBOX_BAD_JOB_ID",
            )
            return self._report(job, result)
        self._in_flight += 1
        metrics.CONCURRENT_COMPILATIONS.inc()
        try:
            result = await self._attempt(job, emergency)
            if result.outcome == pb.OUTCOME_CRASH and not job.cpu_only and self._running:
                first = f"CRASH {outcome.detail(result, 'signal') or ''}".strip()
                retry = pb.WorkerJob()
                retry.CopyFrom(job)
                retry.cpu_only = True
                result = await self._attempt(retry, emergency)
                result.details.add(key="retried_cpu_only", value="true")
                result.details.add(key="first_attempt", value=first)
        finally:
            self._in_flight -= 1
            metrics.CONCURRENT_COMPILATIONS.dec()
        return self._report(job, result)

    def _report(self, job: pb.WorkerJob, result: pb.WorkerResult) -> pb.WorkerResult:
        if self.on_result is not None:
            try:
                self.on_result(job, result)
            except Exception:  # a broken callback must not lose the result
                log.exception("on_result callback failed for job %s", job.job_id)
        return result

    async def _acquire(self, emergency: bool) -> _Slot:
        assert self._free is not None and self._free_emergency is not None
        if emergency and any(s.emergency for s in self._slots):
            return await self._free_emergency.get()
        return await self._free.get()

    def _release(self, slot: _Slot) -> None:
        assert self._free is not None and self._free_emergency is not None
        slot.busy = False
        (self._free_emergency if slot.emergency else self._free).put_nowait(slot)

    async def _attempt(self, job: pb.WorkerJob, emergency: bool) -> pb.WorkerResult:
        job_limits = limits.limits_for(job, self.settings)
        slot = await self._acquire(emergency)
        slot.busy = True
        try:
            if not self._running:
                return self._shutdown_result(job.job_id)
            try:
                worker = await self._ready_worker(slot)
                if not await worker.ping():
                    # Killed while idle (the OOM killer, an operator): never hand it the job, and
                    # never blame the job for its death.
                    log.warning("sandbox worker %d did not answer before dispatch; replacing it", worker.pid)
                    await self._retire(slot)
                    worker = await self._ready_worker(slot)
            except WorkerStartFailed as exc:
                return outcome.result_for(job.job_id, pb.OUTCOME_INTERNAL_ERROR, str(exc), [("phase", "worker start")], error_code=exc.code)
            if job_limits.memory_mb > worker.memory_mb:
                # The worker lowered its hard limit for an earlier job and cannot raise it again.
                await self._retire(slot)
                try:
                    worker = await self._ready_worker(slot, memory_mb=max(job_limits.memory_mb, self._spawn_memory(slot)))
                except WorkerStartFailed as exc:
                    return outcome.result_for(job.job_id, pb.OUTCOME_INTERNAL_ERROR, str(exc), [("phase", "worker start")], error_code=exc.code)
            worker.memory_mb = job_limits.memory_mb
            try:
                attempt = await self._execute(worker, job, job_limits, capped=not slot.emergency)
            except asyncio.CancelledError:
                # The caller gave the job up (preempted, or shutting down): the worker is still busy
                # with it, so it goes; a fresh one takes the slot.
                await self._retire(slot)
                self._respawn_later(slot)
                raise
            except Exception as exc:  # a bug or a hostile job dir must still end as one outcome
                log.exception("sandbox job %s failed in the service", job.job_id)
                await self._kill(worker)
                attempt = _Attempt(outcome.result_for(job.job_id, pb.OUTCOME_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}",
                                                      [("phase", "service")], error_code="SANDBOX_INTERNAL"), recycle=True)
            worker.jobs += 1
            self._jobs_run += 1
            attempt.result.details.add(key="isolation", value=self.isolation_level)
            attempt.result.details.extend(pb.KeyValue(key=k, value=v) for k, v in job_limits.as_details())
            # A CPU-only job hid the GPUs for the rest of that worker's life (CUDA reads the
            # environment once), so on GPU machines it does not serve another job.
            hid_gpus = job.cpu_only and bool(self._plan(worker.workdir).gpu_devices)
            if attempt.recycle or hid_gpus or worker.jobs >= self.settings.sandbox.max_jobs_per_worker:
                await self._retire(slot)
                self._respawn_later(slot)
            return attempt.result
        finally:
            self._release(slot)

    async def _execute(
        self, worker: WorkerProcess, job: pb.WorkerJob, job_limits: limits.JobLimits, *, capped: bool
    ) -> _Attempt:
        job_id = job.job_id
        job_dir = worker.workdir / job_id
        try:
            self._make_job_dir(job_dir)
            inner = pb.WorkerJob()
            inner.CopyFrom(job)
            inner.schema_version = inner.schema_version or 1
            inner.output_dir = str(job_dir / "out")
            inner.memory_limit_mb = job_limits.memory_mb
            inner.timeout_ms = int(job_limits.budget_s * 1000)
            (job_dir / "job.pb").write_bytes(codec.encode(inner))
            await worker.send(f"RUN {job_id}\n")
        except (OSError, ConnectionError) as exc:
            ending = outcome.Ending(worker.proc.returncode, stderr_tail=list(worker.stderr), via_monitor=self._via_monitor,
                                    reason=f"could not hand the job to the worker: {exc}")
            return _Attempt(self._ended(job_id, ending), recycle=True)
        try:
            waited = [0.0]
            line = await self._answer(worker, job_limits.timeout_s, capped, waited)
        except (TimeoutError, asyncio.TimeoutError):
            await self._kill(worker)
            under_cap = (
                f" (of which {waited[0]:.1f} s wall under the CPU cap, counted at the share of a core it allowed)"
                if waited[0] else ""
            )
            ending = outcome.Ending(
                worker.proc.returncode, timed_out=True, stderr_tail=self._evidence(worker, job_dir),
                via_monitor=self._via_monitor,
                reason=f"no answer within the {job_limits.timeout_s:g} s wall-clock limit{under_cap}; "
                "the sandbox was killed with SIGKILL",
            )
            return _Attempt(self._ended(job_id, ending), recycle=True)
        except (ValueError, asyncio.LimitOverrunError):
            await self._kill(worker)
            return _Attempt(self._violation(job_id, "the worker wrote an over-long control line", worker, job_dir), recycle=True)
        try:
            if not line:
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(worker.proc.wait(), timeout=5)
                if worker.proc.returncode is None:
                    await self._kill(worker)
                ending = outcome.Ending(worker.proc.returncode, stderr_tail=self._evidence(worker, job_dir), via_monitor=self._via_monitor)
                return _Attempt(self._ended(job_id, ending), recycle=True)
            if line != f"DONE {job_id}\n".encode():
                await self._kill(worker)
                return _Attempt(self._violation(job_id, f"unexpected control line {line[:80]!r}", worker, job_dir), recycle=True)
            return self._collect(job, job_dir, worker)
        finally:
            self._remove(job_dir)

    def _collect(self, job: pb.WorkerJob, job_dir: Path, worker: WorkerProcess) -> _Attempt:
        try:
            result = results.read_result(job_dir, job.job_id)
        except FileNotFoundError:
            ending = outcome.Ending(worker.proc.returncode, stderr_tail=self._evidence(worker, job_dir), reason="the worker said DONE but wrote no result.pb")
            return _Attempt(self._ended(job.job_id, ending), recycle=True)
        except results.ResultInvalid as exc:
            return _Attempt(self._violation(job.job_id, exc.reason, worker, job_dir), recycle=True)
        if result.outcome == pb.OUTCOME_SUCCESS:
            dest = Path(job.output_dir) if job.output_dir else self._root / "results" / job.job_id
            try:
                exported = results.export_outputs(job_dir / "out", dest, result.artifact_path, max_bytes=_MAX_EXPORT_BYTES)
            except results.ResultInvalid as exc:
                return _Attempt(self._violation(job.job_id, exc.reason, worker, job_dir), recycle=True)
            except FileNotFoundError:
                exported = results.Exported("", 0, [])
                if result.artifact_path:
                    return _Attempt(self._violation(job.job_id, "artifact path given but the output dir is gone", worker, job_dir), recycle=True)
            if exported.artifact_path:
                result.artifact_path = exported.artifact_path
            if exported.skipped:
                result.details.add(key="skipped_outputs", value=",".join(exported.skipped))
            return _Attempt(result, recycle=any(kv.key == RECYCLE_DETAIL for kv in result.details))
        tail = results.tail_lines(job_dir / "stderr.log")
        if tail:
            result.details.add(key="stderr_tail", value="\n".join(tail))
        # A rejection is a verdict on the input; any other failure may have left the worker unwell.
        return _Attempt(result, recycle=result.outcome != pb.OUTCOME_REJECTED)

    def _shutdown_result(self, job_id: str) -> pb.WorkerResult:
        return outcome.result_for(job_id, pb.OUTCOME_INTERNAL_ERROR,
                                  "the sandbox executor was closed before the job ended; resubmit it",
                                  [("phase", "shutdown")], error_code="SANDBOX_SHUTDOWN")

    def _ended(self, job_id: str, ending: outcome.Ending) -> pb.WorkerResult:
        if not self._running and not ending.timed_out:
            # Killed by close(), not by the job: do not blame the blueprint (breakers count this).
            return self._shutdown_result(job_id)
        code, message, details = outcome.classify(ending)
        return outcome.result_for(job_id, code, message, details, error_code="SANDBOX_" + pb.JobOutcome.Name(code).removeprefix("OUTCOME_").removeprefix("SANDBOX_"))

    def _violation(self, job_id: str, reason: str, worker: WorkerProcess, job_dir: Path) -> pb.WorkerResult:
        details = [("violation", reason)]
        tail = self._evidence(worker, job_dir)
        if tail:
            details.append(("stderr_tail", "\n".join(tail)))
        return outcome.result_for(job_id, pb.OUTCOME_SANDBOX_VIOLATION, f"untrustworthy worker answer: {reason}", details,
                                  error_code="SANDBOX_VIOLATION")

    def _evidence(self, worker: WorkerProcess, job_dir: Path) -> list[str]:
        return results.tail_lines(job_dir / "stderr.log") or list(worker.stderr)[-20:]

    @property
    def _via_monitor(self) -> bool:
        return self.isolation_level in ("bwrap", "unshare")

    # ----------------------------------------------------------------------------- workers

    def _prepare_dirs(self) -> None:
        workers_dir = self._root / "workers"
        if workers_dir.exists():
            shutil.rmtree(workers_dir)
        workers_dir.mkdir(parents=True, mode=0o755)
        (self._root / "results").mkdir(parents=True, exist_ok=True)
        cache = self.settings.inductor_cache_dir
        (cache / "tmp").mkdir(parents=True, exist_ok=True)
        for secret in (self.settings.key_dir, self.settings.wal_dir):
            # Created now (0700) so the sandbox can cover it even if the service makes it later.
            secret.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._drop_uid is not None:
            uid = self._drop_uid
            for dirpath, dirnames, filenames in os.walk(cache):
                os.chown(dirpath, uid, uid)
                for name in filenames:
                    os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)

    def _plan(self, workdir: Path, relay: L3Relay | None = None) -> isolation.SandboxPlan:
        s = self.settings
        hidden = [s.state_dir, s.key_dir, s.wal_dir, s.store_dir, s.audit_log_path.parent]
        return isolation.SandboxPlan(
            writable=[workdir, s.inductor_cache_dir, *([relay.directory] if relay else [])],
            hidden=[Path(p) for p in dict.fromkeys(hidden)],
            readable=self._readable,
            drop_to_uid=self._drop_uid,
            gpu_devices=isolation.gpu_device_nodes(),
        )

    def _command(self, workdir: Path) -> list[str]:
        s = self.settings.sandbox
        cmd = [sys.executable, "-m", "tezzeret.sandbox.worker", "--workdir", str(workdir),
               "--threads", str(s.worker_threads), "--compile-threads", str(s.compile_threads),
               "--cpu-time-factor", str(s.cpu_time_factor), "--warm", self.warm]
        for name, spec in self.tasks.items():
            cmd += ["--task", f"{name}={spec}"]
        for path in self.extra_sys_path:
            cmd += ["--sys-path", str(path)]
        if self._drop_uid is not None:
            cmd += ["--uid", str(self._drop_uid)]
        return cmd

    def _spawn_memory(self, slot: _Slot) -> int:
        per = self.settings.resources.per_job_memory_limits
        if slot.emergency:
            return per.emergency
        return max(per.emergency, per.fast, per.standard, per.aggressive)

    async def _spawn(self, slot: _Slot, memory_mb: int | None = None) -> WorkerProcess:
        workdir = self._root / "workers" / f"w{slot.index}-{next(self._generation)}"
        workdir.mkdir(mode=0o700)
        if self._drop_uid is not None:
            os.chown(workdir, self._drop_uid, self._drop_uid)
        env = limits.worker_env(self.settings, os.environ, tmpdir=str(self.settings.inductor_cache_dir / "tmp"), user=_WORKER_USER)
        relay = await self._l3_relay(env)
        if relay is not None:
            self._relays[workdir] = relay
        argv = isolation.build_argv(self.isolation_level, self._plan(workdir, relay), self._command(workdir))
        spawn_limits = limits.spawn_limits(self.settings, memory_mb or self._spawn_memory(slot))
        preexec = limits.preexec(spawn_limits, self.settings)
        if self._throttle is not None and not slot.emergency:
            preexec = _joining(self._throttle.group.procs_files(), preexec)
        try:
            worker = await WorkerProcess.launch(
                argv, env=env, preexec=preexec, workdir=workdir,
                memory_mb=spawn_limits.memory_mb, ready_timeout_s=limits.WARMUP_CPU_S, label=self.isolation_level,
            )
        except WorkerStartFailed as exc:
            self._last_spawn_error = str(exc)
            shutil.rmtree(workdir, ignore_errors=True)
            if relay is not None:
                await self._relays.pop(workdir).close()
            raise
        self._last_spawn_error = None
        return worker

    async def _l3_relay(self, env: dict[str, str]) -> L3Relay | None:
        """Adds the L3 cache variables to `env`; with an L3 Redis, starts the worker's relay to it."""
        from tezzeret.cache import l3_environment

        env |= l3_environment(self.settings)
        url = env.pop("TORCHINDUCTOR_REDIS_URL", None)
        if url is None:
            return None
        if not relayable(url):
            log.warning("L3 Redis %s cannot be relayed into the sandbox (redis:// only): workers use the local cache only",
                        url.split("://")[0] + "://...")
            for key in ("TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE", "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE", "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE"):
                env.pop(key, None)
            return None
        relay = L3Relay(url, owner_uid=self._drop_uid)
        await relay.start()
        env["TORCHINDUCTOR_REDIS_URL"] = relay.worker_url()
        return relay

    async def _ready_worker(self, slot: _Slot, memory_mb: int | None = None) -> WorkerProcess:
        if slot.worker is not None and slot.worker.alive:
            return slot.worker
        if slot.worker is not None:
            await self._retire(slot)
        if slot.spawning is None:
            slot.spawning = asyncio.create_task(self._spawn(slot, memory_mb))
        try:
            slot.worker = await slot.spawning
        finally:
            slot.spawning = None
        return slot.worker

    def _respawn_later(self, slot: _Slot) -> None:
        """Start the replacement now so the next job finds a warm worker."""
        if not self._running or slot.spawning is not None:
            return
        slot.spawning = asyncio.create_task(self._spawn(slot))

        spawning = slot.spawning

        async def settle() -> None:
            try:
                worker = await spawning
            except WorkerStartFailed as exc:
                log.error("replacement worker for slot %d failed to start: %s", slot.index, exc)
                return
            finally:
                if slot.spawning is spawning:
                    slot.spawning = None
            # A job may already have taken this worker through `_ready_worker`.
            if slot.worker is None and self._running:
                slot.worker = worker
            elif slot.worker is not worker:
                await self._kill(worker)
                shutil.rmtree(worker.workdir, ignore_errors=True)

        task = asyncio.create_task(settle())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retire(self, slot: _Slot) -> None:
        worker, slot.worker = slot.worker, None
        if worker is not None:
            self._recycled += 1
            await self._kill(worker)
            shutil.rmtree(worker.workdir, ignore_errors=True)

    async def _kill(self, worker: WorkerProcess) -> None:
        await worker.kill()
        relay = self._relays.pop(worker.workdir, None)
        if relay is not None:
            await relay.close()
        if self.isolation_level == "subprocess" and self._drop_uid is not None:
            # No PID namespace: forks that left the session (double fork, setsid) are found by uid.
            sweep_leftovers(self._drop_uid, str(self._root / "workers"), set(self.worker_pids()))

    async def _kill_all(self) -> None:
        for slot in self._slots:
            if slot.spawning is not None:
                spawning, slot.spawning = slot.spawning, None
                with contextlib.suppress(Exception):
                    worker = await spawning
                    if worker is not slot.worker:
                        await self._kill(worker)
                        shutil.rmtree(worker.workdir, ignore_errors=True)
            if slot.worker is not None:
                worker, slot.worker = slot.worker, None
                if worker.proc.stdin is not None:
                    with contextlib.suppress(Exception):
                        worker.proc.stdin.write(b"QUIT\n")
                await self._kill(worker)
                shutil.rmtree(worker.workdir, ignore_errors=True)

    def _make_job_dir(self, job_dir: Path) -> None:
        # The parent dir is worker-writable: whatever sits at this name (a link, a file) goes.
        if job_dir.is_symlink() or job_dir.is_file():
            job_dir.unlink()
        elif job_dir.exists():
            shutil.rmtree(job_dir)
        job_dir.mkdir(mode=0o700)
        (job_dir / "out").mkdir(mode=0o700)
        if self._drop_uid is not None:
            os.chown(job_dir, self._drop_uid, self._drop_uid)
            os.chown(job_dir / "out", self._drop_uid, self._drop_uid)

    @staticmethod
    def _remove(job_dir: Path) -> None:
        if job_dir.is_symlink():
            job_dir.unlink()
        else:
            shutil.rmtree(job_dir, ignore_errors=True)


def run_job_sync(
    settings: Settings,
    job: pb.WorkerJob,
    *,
    tasks: Mapping[str, str] | None = None,
    emergency: bool = False,
    extra_sys_path: Sequence[Path] = (),
) -> pb.WorkerResult:
    """Start a one-worker executor, run `job`, close it: for the CLI and benches."""
    one = settings.model_copy(deep=True)
    one.compilation.max_concurrent_jobs = 1
    one.emergency.reserved_worker = emergency

    async def go() -> pb.WorkerResult:
        executor = SandboxExecutor(one, tasks=tasks, extra_sys_path=extra_sys_path)
        await executor.start()
        try:
            return await executor.run(job, emergency=emergency)
        finally:
            await executor.close(0)

    return asyncio.run(go())


def _joining(procs_files: list[Path], then: Callable[[], None]) -> Callable[[], None]:
    """A preexec that joins the capped cgroup first, so the worker and all it starts are in it."""

    def apply() -> None:
        throttle.join(procs_files)
        then()

    return apply
