"""The PipelineManager: moves queued jobs to the sandbox, at most N at a time plus one emergency slot.

Owns: dispatch only. Normal work runs while fewer than `capacity()` jobs run (capacity comes from
conservative mode's effective settings, so it can shrink at run time without killing anything).
An EMERGENCY job takes the sandbox's reserved emergency slot when it is free, or a normal slot,
and is never made to wait behind normal work. Running user jobs are never preempted; automatic
work (Urza polling, idle recompilation, rebuilds) is, when a user job waits for its slot. Must never
decide what a job does (the runner callback does) and never let a runner's exception kill the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from tezzeret import metrics
from tezzeret.forge.jobs import Job
from tezzeret.forge.queue import PriorityJobQueue
from tezzeret.leyline import pb

log = logging.getLogger(__name__)

Runner = Callable[[Job, bool], Awaitable[None]]


@dataclass
class PipelineManager:
    queue: PriorityJobQueue
    capacity: Callable[[], int]
    runner: Runner
    emergency_slot: bool = True
    # Returns why dispatch must wait (e.g. the store's breaker is OPEN: a compile now could not be
    # stored), or None. Checked at least every `recheck_s`.
    hold: Callable[[], str | None] = lambda: None
    # Returns why this job may not start next to the running ones (e.g. its memory would not fit
    # under `resources.memory_budget_gb`), or None. Not asked for the reserved emergency slot.
    admits: Callable[[Job, list[Job]], str | None] = lambda job, running: None
    recheck_s: float = 1.0
    held_reason: str | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _normal: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _emergency: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _jobs: dict[str, Job] = field(default_factory=dict)
    _loop_task: asyncio.Task[None] | None = None
    _paused: bool = False
    _stopping: bool = False

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="pipeline-dispatch")

    def wakeup(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Stop starting new jobs; running ones continue (used while shutting down)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._normal) + len(self._emergency)

    def running_ids(self) -> list[str]:
        return [*self._emergency, *self._normal]

    @property
    def idle(self) -> bool:
        return self.running == 0 and len(self.queue) == 0

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if not self._paused:
                self.held_reason = self.hold()
                if self.held_reason is None:
                    self._dispatch_ready()
            try:
                await asyncio.wait_for(self._wake.wait(), self.recheck_s)
            except TimeoutError:
                pass

    def _next(self) -> Job | None:
        """The queue's head, except that a waiting user job goes before automatic work."""
        head = self.queue.peek()
        if head is not None and head.automatic:
            return next((j for j in self.queue.ordered() if not j.automatic), head)
        return head

    def _dispatch_ready(self) -> None:
        while (head := self._next()) is not None:
            if head.priority == pb.PRIORITY_EMERGENCY and self.emergency_slot and not self._emergency:
                lane_emergency = True
            elif len(self._normal) < max(1, self.capacity()):
                lane_emergency = False
                why = self.admits(head, [self._jobs[j] for j in self._normal if j in self._jobs])
                if why is not None:
                    head.waiting_reason = why
                    return
            else:
                if not head.automatic:
                    self._preempt_automatic()
                return
            head.waiting_reason = None
            self.queue.remove(head.job_id)
            self._launch(head, emergency=lane_emergency)

    def _preempt_automatic(self) -> None:
        """A user job waits and every slot is taken: automatic work (polling, idle recompilation,
        rebuilds) gives one up. The runner sees the cancellation, the job goes back to the queue
        (the journal still has it as started, as after a crash) and runs again later."""
        for job_id, task in self._normal.items():
            job = self._jobs.get(job_id)
            if job is not None and job.automatic and not job.preempted and not task.done():
                job.preempted = True
                log.info("preempting automatic job %s (%s) for waiting user work", job_id, job.source)
                task.cancel()
                return

    def _launch(self, job: Job, *, emergency: bool) -> None:
        lane = self._emergency if emergency else self._normal
        self._jobs[job.job_id] = job
        task = asyncio.create_task(self._guarded(job, emergency), name=f"job-{job.job_id}")
        lane[job.job_id] = task
        task.add_done_callback(functools.partial(self._finished, lane, job.job_id))
        metrics.QUEUE_DEPTH.set(len(self.queue))

    async def _guarded(self, job: Job, emergency: bool) -> None:
        try:
            await self.runner(job, emergency)
        except asyncio.CancelledError:
            if job.preempted and not self._stopping:
                # Preempted (maybe before it even started): back in line, in its original place.
                job.preempted = False
                self.queue.push(job)
                self._wake.set()
                return
            raise
        except Exception:  # noqa: BLE001 - one job's bug must not stop the forge
            log.exception("job %s failed inside the forge", job.job_id)

    def _finished(self, lane: dict[str, asyncio.Task[None]], job_id: str, _task: object = None) -> None:
        lane.pop(job_id, None)
        self._jobs.pop(job_id, None)
        metrics.QUEUE_DEPTH.set(len(self.queue))
        self._wake.set()

    async def close(self, grace_s: float) -> list[str]:
        """Stop dispatching, give running jobs `grace_s` to finish, cancel the rest.

        Returns the ids of jobs cancelled mid-run: the journal still has them as started, so WAL
        recovery requeues them on the next start.
        """
        self._paused = True
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        tasks = [*self._normal.values(), *self._emergency.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        left = [jid for jid, t in [*self._normal.items(), *self._emergency.items()] if not t.done()]
        for t in tasks:
            if not t.done():
                t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return left
