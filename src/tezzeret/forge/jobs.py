"""The forge's view of every job: what was asked, where it stands, how it ended.

Owns: `JobView` (one job's request summary, status and result) and `JobRegistry`, the bounded
in-memory index behind `GET /v1/jobs/{id}`. Finished jobs are forgotten after
`memory_management.job_ttl_seconds` or beyond `max_entries_per_cache` (oldest finished first), so
memory stays bounded; waiting and running jobs are never evicted. Must never be the durable record:
the WAL job journal is, and the registry is rebuilt from it at start-up.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from tezzeret.leyline import pb, to_json
from tezzeret.metrics import MEMORY_CACHE_ENTRIES, MEMORY_TTL_CLEANUP


class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    FROM_CACHE = "FROM_CACHE"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.FROM_CACHE)


@dataclass
class JobView:
    job_id: str
    artifact_id: str
    blueprint_digest: str
    blueprint_name: str
    strategy: str
    priority: str
    status: JobStatus
    requested_by: str = ""
    request_id: str = ""
    source: str = "api"
    strategy_reason: str = ""
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    sequence: int = 0
    result: pb.CompilationResult | None = None
    # The resolved request without its blueprint (which `blueprint_digest` names).
    request: dict[str, Any] | None = None
    error: str | None = None
    error_code: str | None = None

    def to_dict(self, position: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "artifact_id": self.artifact_id,
            "blueprint_digest": self.blueprint_digest,
            "blueprint_name": self.blueprint_name,
            "strategy": self.strategy,
            "strategy_reason": self.strategy_reason,
            "priority": self.priority,
            "status": self.status.value,
            "requested_by": self.requested_by,
            "request_id": self.request_id,
            "source": self.source,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "sequence": self.sequence,
            "queue_position": position,
            "error": self.error,
            "error_code": self.error_code,
            "request": self.request,
        }
        if self.result is not None:
            import json

            out["result"] = json.loads(to_json(self.result))
        return out


@dataclass
class JobRegistry:
    ttl_s: float = 3600.0
    max_finished: int = 100_000
    clock: Callable[[], float] = time.time
    _jobs: dict[str, JobView] = field(default_factory=dict)
    # Finished job ids in finishing order, for eviction.
    _finished: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def add(self, job: JobView) -> None:
        self._jobs[job.job_id] = job
        if job.status.finished:
            self._mark_finished(job)
        MEMORY_CACHE_ENTRIES.labels(cache_type="jobs").set(len(self._jobs))

    def get(self, job_id: str) -> JobView | None:
        return self._jobs.get(job_id)

    def finish(self, job: JobView, status: JobStatus) -> None:
        job.status = status
        job.finished_at = self.clock()
        self._mark_finished(job)

    def _mark_finished(self, job: JobView) -> None:
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

    def unfinished(self) -> list[JobView]:
        return [j for j in self._jobs.values() if not j.status.finished]

    def recent(self, limit: int = 50) -> list[JobView]:
        return sorted(self._jobs.values(), key=lambda j: j.submitted_at, reverse=True)[:limit]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s.value: 0 for s in JobStatus}
        for job in self._jobs.values():
            out[job.status.value] += 1
        return out

    def __len__(self) -> int:
        return len(self._jobs)
