"""The priority queue: FIFO within a priority, urgency across priorities, aging, positions."""

from __future__ import annotations

from tezzeret.forge.jobs import Job
from tezzeret.forge.queue import PriorityJobQueue
from tezzeret.leyline import pb


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def job(q: PriorityJobQueue, jid: str, prio: int, seq: int) -> None:
    request = pb.CompilationRequest(priority=prio)
    q.push(Job(jid, request, "a-" + jid, "d" * 64, jid, sequence=seq, enqueued_at=q.clock()))


def drain(q: PriorityJobQueue) -> list[str]:
    out = []
    while (j := q.pop()) is not None:
        out.append(j.job_id)
    return out


def test_fifo_within_priority_and_urgency_across() -> None:
    q: PriorityJobQueue = PriorityJobQueue(aging_interval_s=300, clock=Clock())
    job(q, "n1", pb.PRIORITY_NORMAL, 1)
    job(q, "b1", pb.PRIORITY_BACKGROUND, 2)
    job(q, "n2", pb.PRIORITY_NORMAL, 3)
    job(q, "e1", pb.PRIORITY_EMERGENCY, 4)
    job(q, "s1", pb.PRIORITY_STRATEGIC, 5)
    job(q, "u1", pb.PRIORITY_UNSPECIFIED, 6)  # unset reads as NORMAL
    assert q.position("e1") == 0
    assert len(q) == 6
    assert drain(q) == ["e1", "s1", "n1", "n2", "u1", "b1"]
    assert len(q) == 0


def test_aging_boosts_old_work_but_never_into_emergency() -> None:
    clock = Clock()
    q: PriorityJobQueue = PriorityJobQueue(aging_interval_s=300, clock=clock)
    job(q, "old-bg", pb.PRIORITY_BACKGROUND, 1)
    clock.t += 301  # one level: BACKGROUND → EXPERIMENTAL
    job(q, "new-exp", pb.PRIORITY_EXPERIMENTAL, 2)
    job(q, "new-normal", pb.PRIORITY_NORMAL, 3)
    assert [j.job_id for j in q.ordered()] == ["new-normal", "old-bg", "new-exp"]
    clock.t += 10_000  # far past every boost: capped at STRATEGIC
    job(q, "emerg", pb.PRIORITY_EMERGENCY, 4)
    assert drain(q) == ["emerg", "old-bg", "new-exp", "new-normal"]


def test_restored_jobs_keep_sequence_order_and_duplicates_refused() -> None:
    q: PriorityJobQueue = PriorityJobQueue(clock=Clock())
    job(q, "c", pb.PRIORITY_NORMAL, 30)
    job(q, "a", pb.PRIORITY_NORMAL, 10)
    job(q, "b", pb.PRIORITY_NORMAL, 20)
    try:
        job(q, "a", pb.PRIORITY_NORMAL, 10)
    except ValueError as exc:
        assert "already queued" in str(exc)
    else:
        raise AssertionError("duplicate job id accepted")
    assert q.remove("b") is not None and "b" not in q
    assert drain(q) == ["a", "c"]
