"""The forge's in-memory priority queue: FIFO within a priority, with aging of waiting work.

Owns: the order in which journaled jobs leave for the sandbox. A job waiting longer than
`aging_interval_s` is treated as one priority level higher per interval (upstream §7.1: items older
than 5 min are boosted one level), but aging never lifts work into EMERGENCY, which only Tamiyo's
emergency path may use. Must never journal, compile or block: the WAL is the durable copy, this is
only the working order rebuilt from it at start-up.

Why not `heapq`/`asyncio.PriorityQueue`: aging changes a waiting job's effective priority as time
passes, which a heap keyed at insertion cannot express. With one FIFO per level the oldest job of a
level is always its head, so comparing the five heads is exact and O(levels).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, cast

from tezzeret.forge.jobs import Job
from tezzeret.leyline import pb

# Highest urgency first: lower number = more urgent (the enum's order).
LEVELS: tuple[int, ...] = (
    pb.PRIORITY_EMERGENCY,
    pb.PRIORITY_STRATEGIC,
    pb.PRIORITY_NORMAL,
    pb.PRIORITY_EXPERIMENTAL,
    pb.PRIORITY_BACKGROUND,
)


def normalize_priority(priority: int) -> pb.CompilationPriority:
    """An unset or unknown priority is NORMAL."""
    return cast(pb.CompilationPriority, priority) if priority in LEVELS else pb.PRIORITY_NORMAL


def effective_priority(job: Job, now: float, aging_interval_s: float) -> float:
    """Priority after aging, never above STRATEGIC unless it was EMERGENCY to begin with."""
    priority = normalize_priority(job.priority)
    if priority == pb.PRIORITY_EMERGENCY or aging_interval_s <= 0:
        return float(priority)
    boost = int(max(0.0, now - job.enqueued_at) // aging_interval_s)
    return float(max(pb.PRIORITY_STRATEGIC, priority - boost))


@dataclass
class PriorityJobQueue:
    """FIFO per priority level; `pop` takes the most urgent head after aging, ties by sequence."""

    aging_interval_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _levels: dict[int, deque[Job]] = field(default_factory=lambda: {lv: deque() for lv in LEVELS})
    _ids: set[str] = field(default_factory=set)

    def push(self, job: Job) -> None:
        if job.job_id in self._ids:
            raise ValueError(f"job {job.job_id} is already queued")
        lane = self._levels[normalize_priority(job.priority)]
        # Restored jobs arrive in sequence order; keep a lane sorted even if one arrives late.
        if lane and lane[-1].sequence > job.sequence:
            items = sorted([*lane, job], key=lambda j: j.sequence)
            lane.clear()
            lane.extend(items)
        else:
            lane.append(job)
        self._ids.add(job.job_id)

    def _best_lane(self) -> int | None:
        now = self.clock()
        best: tuple[float, int] | None = None
        best_level: int | None = None
        for level, lane in self._levels.items():
            if not lane:
                continue
            head = lane[0]
            key = (effective_priority(head, now, self.aging_interval_s), head.sequence)
            if best is None or key < best:
                best, best_level = key, level
        return best_level

    def peek(self) -> Job | None:
        level = self._best_lane()
        return None if level is None else self._levels[level][0]

    def pop(self) -> Job | None:
        level = self._best_lane()
        if level is None:
            return None
        job = self._levels[level].popleft()
        self._ids.discard(job.job_id)
        return job

    def remove(self, job_id: str) -> Job | None:
        if job_id not in self._ids:
            return None
        for lane in self._levels.values():
            for job in lane:
                if job.job_id == job_id:
                    lane.remove(job)
                    self._ids.discard(job_id)
                    return job
        return None

    def ordered(self) -> list[Job]:
        """Every waiting job in the order `pop` would return them right now."""
        now = self.clock()
        jobs = [j for lane in self._levels.values() for j in lane]
        return sorted(jobs, key=lambda j: (effective_priority(j, now, self.aging_interval_s), j.sequence))

    def position(self, job_id: str) -> int | None:
        """0-based place in line, or None when not queued."""
        if job_id not in self._ids:
            return None
        for i, job in enumerate(self.ordered()):
            if job.job_id == job_id:
                return i
        return None

    def count_at_or_above(self, priority: int) -> int:
        return sum(len(self._levels[lv]) for lv in LEVELS if lv <= priority)

    def depth_by_priority(self) -> dict[str, int]:
        return {pb.CompilationPriority.Name(lv): len(lane) for lv, lane in self._levels.items()}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.ordered())
