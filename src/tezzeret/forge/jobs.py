"""One job, one record: `Job`, and `JobRegistry`, the forge's in-memory index of jobs.

Owns: `Job` (the resolved request, its identity, where it stands and how it ended: the queue orders
it, the runner runs it, the API shows it, and the journal writes it as `pb.JobRecord`s), and
`JobRegistry`, which indexes jobs by id and holds the one in-flight registry of the forge: the
unfinished job of each artifact id, so a duplicate submission joins it instead of compiling again.
Finished jobs are forgotten after `memory_management.job_ttl_seconds` or beyond
`max_entries_per_cache` (oldest finished first); waiting and running jobs are never evicted. Must
never be the durable record: the WAL job journal is, and the registry is rebuilt from it at start.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from tezzeret.artifact.target import parse_target
from tezzeret.blueprint import BlueprintSummary
from tezzeret.leyline import Strategy, pb, to_json
from tezzeret.metrics import MEMORY_CACHE_ENTRIES, MEMORY_TTL_CLEANUP

if TYPE_CHECKING:
    from tezzeret.forge.payback import Prediction


class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    FROM_CACHE = "FROM_CACHE"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.FROM_CACHE)


# Sources whose jobs nobody is waiting on: they never hold a slot a user job waits for.
AUTOMATIC_SOURCES = frozenset({"urza", "idle", "rebuild"})


def priority_name(priority: int) -> str:
    return pb.CompilationPriority.Name(priority).removeprefix("PRIORITY_")


@dataclass(eq=False)
class Job:
    job_id: str
    # Resolved at intake: blueprint inline, `blueprint_id` = digest, strategy, priority and
    # request_id set, so recovery rebuilds the job without consulting anything that may change.
    request: pb.CompilationRequest
    artifact_id: str
    digest: str
    name: str
    strategy_reason: str = ""
    source: str = "api"
    status: JobStatus = JobStatus.QUEUED
    sequence: int = 0
    submitted_at: float = field(default_factory=time.time)
    # Monotonic time it joined the queue (the queue's aging counts from it).
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    result: pb.CompilationResult | None = None
    # What validation found (None for a job rebuilt from the journal: its request was validated
    # when it was accepted, and recovery must not re-decide anything).
    summary: BlueprintSummary | None = None
    # Resolved once the job is journaled: a duplicate is answered only when the work is durable.
    admitted: asyncio.Future[None] | None = field(default=None, repr=False)
    # Emergency requests (Tamiyo) that joined this job: each gets its own reply when it ends.
    # Once the job's events are built (`replies_sealed`), a late request waits for the end instead.
    emergency_requests: list[str] = field(default_factory=list)
    replies_sealed: bool = False
    # Why the job has not started although a slot may be free (e.g. no node offers its target).
    waiting_reason: str | None = None
    # The tier the request asked for, when intake already knew it fails for this blueprint under
    # this toolchain and admitted the job one (or more) tiers down; and why.
    requested_strategy: Strategy | None = None
    fallback_notes: tuple[str, ...] = ()
    # Monotonic time by which the job must end (request timeout_ms, emergency deadline_ms).
    deadline: float | None = None
    # Automatic work (Urza polling, idle recompilation, rebuilds) gives its slot up to user jobs.
    preempted: bool = False
    # Times the job ran again because its compile node was lost mid-job, and why each time.
    node_losses: list[str] = field(default_factory=list)
    # What the payback predictor expects of the tier the job was admitted at (its ETA); None for
    # a job rebuilt from the journal.
    prediction: Prediction | None = None

    @property
    def automatic(self) -> bool:
        return self.source in AUTOMATIC_SOURCES

    @property
    def target(self) -> str:
        """The target the artifact is built for, as intake resolved it ("": this host's CPU)."""
        return self.request.options.target_hardware

    @property
    def target_spec(self) -> pb.TargetSpec | None:
        """The target as its artifact id is computed (None: this host's CPU)."""
        return parse_target(self.target) if self.target else None

    @property
    def ir(self) -> pb.BlueprintIR:
        return self.request.blueprint

    @property
    def strategy(self) -> Strategy:
        return Strategy.parse(self.request.strategy)

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def requested_by(self) -> str:
        return self.request.requested_by

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def error(self) -> str | None:
        return (self.result.error or None) if self.result is not None else None

    @property
    def error_code(self) -> str | None:
        return (self.result.error_code or None) if self.result is not None else None

    def to_dict(self, position: int | None = None) -> dict[str, Any]:
        summary = pb.CompilationRequest()
        summary.CopyFrom(self.request)
        summary.ClearField("blueprint")
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "artifact_id": self.artifact_id,
            "blueprint_digest": self.digest,
            "blueprint_name": self.name,
            "strategy": self.strategy.value,
            "strategy_reason": self.strategy_reason,
            "priority": priority_name(self.priority),
            "status": self.status.value,
            "requested_by": self.requested_by,
            "request_id": self.request_id,
            "source": self.source,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "sequence": self.sequence,
            "queue_position": position,
            "waiting_reason": self.waiting_reason,
            "node_losses": list(self.node_losses),
            "error": self.error,
            "error_code": self.error_code,
            "request": json.loads(to_json(summary)),
        }
        if self.prediction is not None:
            out["prediction"] = self.prediction.to_dict()
            if not self.status.finished:
                # From the start when running; from now while queued (waiting not included).
                eta = (self.started_at or time.time()) + self.prediction.compile_s
                out["eta_at"] = round(eta, 3)
                out["eta"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(eta))
        if self.result is not None:
            out["result"] = json.loads(to_json(self.result))
            if self.result.HasField("strategy_requested"):
                out["strategy_requested"] = Strategy.parse(self.result.strategy_requested).value
                out["strategy_served"] = Strategy.parse(self.result.strategy_used).value
                out["fallback_reason"] = self.result.fallback_reason
        return out


@dataclass(frozen=True)
class Admission:
    """The answer to one submission: the job that carries it, and how it was carried."""

    job: Job
    from_cache: bool = False
    joined: bool = False
    queue_position: int | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def artifact_id(self) -> str:
        return self.job.artifact_id

    @property
    def status(self) -> str:
        return self.job.status.value

    @property
    def strategy(self) -> str:
        return self.job.strategy.value

    @property
    def blueprint_digest(self) -> str:
        return self.job.digest

    def to_dict(self) -> dict[str, Any]:
        j = self.job
        return {
            "job_id": j.job_id,
            "artifact_id": j.artifact_id,
            "blueprint_digest": j.digest,
            "blueprint_name": j.name,
            "strategy": j.strategy.value,
            "priority": priority_name(j.priority),
            "status": j.status.value,
            "from_cache": self.from_cache,
            "joined": self.joined,
            "queue_position": self.queue_position,
            "request_id": j.request_id,
        }


@dataclass
class JobRegistry:
    ttl_s: float = 3600.0
    max_finished: int = 100_000
    clock: Callable[[], float] = time.time
    _jobs: dict[str, Job] = field(default_factory=dict)
    # Finished job ids in finishing order, for eviction.
    _finished: OrderedDict[str, float] = field(default_factory=OrderedDict)
    # The in-flight registry: artifact id -> its unfinished job (being admitted, queued or running).
    _active: dict[str, Job] = field(default_factory=dict)

    def add(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        if job.status.finished:
            self._mark_finished(job)
        MEMORY_CACHE_ENTRIES.labels(cache_type="jobs").set(len(self._jobs))

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    # ---- in flight -------------------------------------------------------------------------
    def active(self, artifact_id: str) -> Job | None:
        return self._active.get(artifact_id)

    def activate(self, job: Job) -> None:
        """`job` now carries its artifact id: duplicates join it until it finishes or is dropped."""
        self._active[job.artifact_id] = job

    def deactivate(self, job: Job) -> None:
        if self._active.get(job.artifact_id) is job:
            del self._active[job.artifact_id]

    def active_digests(self) -> set[str]:
        return {j.digest for j in self._active.values()}

    def unfinished(self) -> list[Job]:
        return list(self._active.values())

    # ---- ending ----------------------------------------------------------------------------
    def finish(self, job: Job, status: JobStatus) -> None:
        job.status = status
        job.finished_at = self.clock()
        self.deactivate(job)
        self._mark_finished(job)

    def _mark_finished(self, job: Job) -> None:
        self._finished[job.job_id] = job.finished_at or self.clock()
        self._finished.move_to_end(job.job_id)
        self.sweep()

    def sweep(self) -> int:
        """Drop finished jobs past their TTL or beyond the cap; returns how many went."""
        now = self.clock()
        gone = 0
        while self._finished:
            job_id, at = next(iter(self._finished.items()))
            if now - at <= self.ttl_s and len(self._finished) <= self.max_finished:
                break
            self._finished.popitem(last=False)
            self._jobs.pop(job_id, None)
            gone += 1
        if gone:
            MEMORY_TTL_CLEANUP.labels(cache_type="jobs").inc(gone)
        MEMORY_CACHE_ENTRIES.labels(cache_type="jobs").set(len(self._jobs))
        return gone

    def recent(self, limit: int = 50) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.submitted_at, reverse=True)[:limit]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s.value: 0 for s in JobStatus}
        for job in self._jobs.values():
            out[job.status.value] += 1
        return out

    def __len__(self) -> int:
        return len(self._jobs)
