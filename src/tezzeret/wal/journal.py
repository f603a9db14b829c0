"""The job journal: the forge's queue, made durable in the WAL.

Owns: one WAL transaction per job event (enqueued with the full request bytes and priority,
started, finished with its result, failed), each durable before the call returns, and the state
folded from them: pending jobs ordered by priority value (PRIORITY_EMERGENCY=1 first) then by
sequence (FIFO), completed results by artifact id (a repeat is answered `from_cache`), and jobs that
were started before a crash but never finished, which go back to pending in their original place.
Every `checkpoint_interval_compilations` finished or failed jobs it compacts the log to a snapshot
whose replay gives exactly the same state. A job's end may carry its outbox: the events to publish
for it, durable with the end and listed as unpublished until `published` acknowledges them. Payloads are Leyline `JobRecord`s, never pickle. Must
never compile, schedule or talk to the store: it records what the forge decided.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from tezzeret.leyline import codec, pb
from tezzeret.wal.errors import WalStateError
from tezzeret.wal.log import Wal
from tezzeret.wal.recovery import CHECKPOINT_OPERATION, CommittedTransaction

JOURNAL_OPERATION = "JOB_JOURNAL"
_CONTEXT = pb.ExecutionContext(schema_version=codec.SCHEMA_VERSION, operation=JOURNAL_OPERATION)


def _is_priority(value: int) -> TypeGuard[pb.CompilationPriority]:
    """A set CompilationPriority (not UNSPECIFIED), fit for a JobRecord's enum field."""
    return value in pb.CompilationPriority.values() and value != pb.PRIORITY_UNSPECIFIED


@dataclass
class JournalState:
    """A consistent copy of the journal's state (safe to keep; later events do not change it)."""

    # ENQUEUED records (request bytes, priority, sequence, source, time) of jobs not yet ended.
    pending: list[pb.JobRecord] = field(default_factory=list)
    in_flight: list[pb.JobRecord] = field(default_factory=list)
    completed: dict[str, pb.CompilationResult] = field(default_factory=dict)
    failures: dict[str, pb.CompilationResult] = field(default_factory=dict)
    # Pending jobs whose artifact finished under another job: answer them from_cache.
    already_completed: list[pb.JobRecord] = field(default_factory=list)
    # Ended jobs whose outbox events were recorded but not yet published: job id → events.
    unpublished: dict[str, list[pb.OutboxEvent]] = field(default_factory=dict)
    next_sequence: int = 1

    def is_completed(self, artifact_id: str) -> bool:
        return artifact_id in self.completed


@dataclass
class _Open:
    """A job enqueued and not yet ended: its ENQUEUED record, and how often it was started."""

    record: pb.JobRecord
    attempts: int = 0
    running: bool = False


class JobJournal:
    """Attach to a freshly opened WAL: `JobJournal(Wal.open(dir))`."""

    def __init__(self, wal: Wal) -> None:
        self._wal = wal
        self._lock = threading.RLock()
        self._jobs: dict[str, _Open] = {}
        self._completed: dict[str, pb.CompilationResult] = {}
        self._completed_seq: dict[str, int] = {}
        self._failures: dict[str, pb.CompilationResult] = {}
        self._unpublished: dict[str, list[pb.OutboxEvent]] = {}
        self._next_sequence = 1
        self._since_checkpoint = 0
        self._replaying = True
        wal.attach(self)
        self._replaying = False
        # Jobs started before the crash and never finished run again, in their original place.
        requeued = []
        for job in self._jobs.values():
            if job.running:
                job.running = False
                requeued.append(job.record.job_id)
        wal.recovery.requeued_jobs = sorted(requeued, key=lambda j: self._jobs[j].record.sequence)

    # -- WalStateMachine ---------------------------------------------------------------------
    def apply(self, txn: CommittedTransaction) -> None:
        operation = txn.context.operation
        if operation == CHECKPOINT_OPERATION:
            with self._lock:
                self._jobs.clear()
                self._completed.clear()
                self._completed_seq.clear()
                self._failures.clear()
                self._unpublished.clear()
        elif operation != JOURNAL_OPERATION:
            return  # another component's transaction: not the journal's business
        for payload in txn.payloads:
            self._apply_record(codec.decode(pb.JobRecord, payload))

    def _apply_record(self, record: pb.JobRecord) -> None:
        with self._lock:
            event = record.event
            seq = record.sequence
            if seq >= self._next_sequence:
                self._next_sequence = seq + 1
            job = self._jobs.get(record.job_id)
            if event == pb.JOB_ENQUEUED:
                if job is None:
                    kept = pb.JobRecord()
                    kept.CopyFrom(record)
                    self._jobs[record.job_id] = _Open(kept)
            elif event == pb.JOB_STARTED:
                if job is not None:
                    job.attempts += 1
                    job.running = True
            elif event in (pb.JOB_FINISHED, pb.JOB_FAILED):
                if job is not None:
                    del self._jobs[record.job_id]
                result = pb.CompilationResult()
                result.CopyFrom(record.result)
                if record.outbox:
                    self._unpublished[record.job_id] = list(record.outbox)
                if event == pb.JOB_FINISHED:
                    self._completed[record.artifact_id] = result
                    self._completed_seq[record.artifact_id] = seq
                    self._failures.pop(record.artifact_id, None)
                else:
                    self._failures[record.artifact_id] = result
                if not self._replaying:
                    self._since_checkpoint += 1
            elif event == pb.JOB_PUBLISHED:
                self._unpublished.pop(record.job_id, None)
            elif event == pb.JOB_OUTBOX:
                self._unpublished[record.job_id] = list(record.outbox)

    def snapshot(self) -> list[bytes]:
        """Records whose replay rebuilds the current state exactly."""
        out = []
        with self._lock:
            for artifact_id, result in self._completed.items():
                out.append(codec.encode(pb.JobRecord(
                    schema_version=codec.SCHEMA_VERSION, event=pb.JOB_FINISHED,
                    job_id=result.job_id, artifact_id=artifact_id,
                    sequence=self._completed_seq.get(artifact_id, 0), result=result,
                )))
            for artifact_id, result in self._failures.items():
                out.append(codec.encode(pb.JobRecord(
                    schema_version=codec.SCHEMA_VERSION, event=pb.JOB_FAILED,
                    job_id=result.job_id, artifact_id=artifact_id, result=result,
                )))
            for job in sorted(self._jobs.values(), key=lambda j: j.record.sequence):
                out.append(codec.encode(job.record))
                for _ in range(job.attempts):
                    out.append(codec.encode(pb.JobRecord(
                        schema_version=codec.SCHEMA_VERSION, event=pb.JOB_STARTED,
                        job_id=job.record.job_id, artifact_id=job.record.artifact_id,
                    )))
            for job_id, events in self._unpublished.items():
                out.append(codec.encode(pb.JobRecord(
                    schema_version=codec.SCHEMA_VERSION, event=pb.JOB_OUTBOX, job_id=job_id, outbox=events,
                )))
            # The next sequence survives even when every job it numbered is gone.
            out.append(codec.encode(pb.JobRecord(
                schema_version=codec.SCHEMA_VERSION, event=pb.JOB_EVENT_UNSPECIFIED,
                sequence=self._next_sequence - 1,
            )))
        return out

    # -- events --------------------------------------------------------------------------------
    # Each event has a sync form (for threads) and an async one that awaits the WAL's native
    # async commit (no thread per call); both build the same record through the same checks.
    def _encode(self, record: pb.JobRecord) -> bytes:
        record.schema_version = codec.SCHEMA_VERSION
        record.at_ns = time.time_ns()
        return codec.encode(record)

    def _record(self, record: pb.JobRecord) -> None:
        txn = self._wal.begin(_CONTEXT)
        txn.data(self._encode(record))
        txn.commit()

    async def _record_async(self, record: pb.JobRecord) -> None:
        txn = await self._wal.begin_async(_CONTEXT)
        await txn.data_async(self._encode(record))
        await txn.commit_async()

    def _enqueue_record(self, job_id: str, artifact_id: str, priority: int, request: bytes,
                        source: str, strategy_reason: str) -> tuple[int, pb.JobRecord | None]:
        if not _is_priority(priority):
            raise WalStateError(f"job {job_id}: priority {priority} is not a CompilationPriority")
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None:
                return existing.record.sequence, None
            seq = self._next_sequence
            self._next_sequence += 1
        return seq, pb.JobRecord(event=pb.JOB_ENQUEUED, job_id=job_id, artifact_id=artifact_id,
                                 priority=priority, sequence=seq, request=request,
                                 source=source or None, strategy_reason=strategy_reason or None)

    def enqueue(self, job_id: str, artifact_id: str, priority: int, request: bytes, *,
                source: str = "", strategy_reason: str = "") -> int:
        """Journal a new job durably; returns its sequence. Enqueuing a known job id again
        returns the original sequence and writes nothing."""
        seq, record = self._enqueue_record(job_id, artifact_id, priority, request, source, strategy_reason)
        if record is not None:
            self._record(record)
        return seq

    async def enqueue_async(self, job_id: str, artifact_id: str, priority: int, request: bytes, *,
                            source: str = "", strategy_reason: str = "") -> int:
        seq, record = self._enqueue_record(job_id, artifact_id, priority, request, source, strategy_reason)
        if record is not None:
            await self._record_async(record)
        return seq

    def _job(self, job_id: str) -> _Open:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise WalStateError(f"job {job_id} is not pending in the journal (never enqueued, "
                                "or already finished or failed)")
        return job

    def _started_record(self, job_id: str) -> pb.JobRecord:
        job = self._job(job_id).record
        return pb.JobRecord(event=pb.JOB_STARTED, job_id=job_id, artifact_id=job.artifact_id,
                            sequence=job.sequence)

    def started(self, job_id: str) -> None:
        self._record(self._started_record(job_id))

    async def started_async(self, job_id: str) -> None:
        await self._record_async(self._started_record(job_id))

    # `outbox`: events to publish for this job, made durable with its end (the durable outbox);
    # `published` acknowledges them once the bus has them, and `state().unpublished` lists the
    # rest for recovery to publish again.
    def finished(self, job_id: str, result: pb.CompilationResult, outbox: Sequence[pb.OutboxEvent] = ()) -> None:
        self._end(job_id, result, pb.JOB_FINISHED, outbox)

    async def finished_async(self, job_id: str, result: pb.CompilationResult,
                             outbox: Sequence[pb.OutboxEvent] = ()) -> None:
        await self._end_async(job_id, result, pb.JOB_FINISHED, outbox)

    def failed(self, job_id: str, result: pb.CompilationResult, outbox: Sequence[pb.OutboxEvent] = ()) -> None:
        self._end(job_id, result, pb.JOB_FAILED, outbox)

    async def failed_async(self, job_id: str, result: pb.CompilationResult,
                           outbox: Sequence[pb.OutboxEvent] = ()) -> None:
        await self._end_async(job_id, result, pb.JOB_FAILED, outbox)

    def published(self, job_id: str) -> None:
        self._record(pb.JobRecord(event=pb.JOB_PUBLISHED, job_id=job_id))

    async def published_async(self, job_id: str) -> None:
        await self._record_async(pb.JobRecord(event=pb.JOB_PUBLISHED, job_id=job_id))

    def _end(self, job_id: str, result: pb.CompilationResult, event: pb.JobEvent, outbox: Sequence[pb.OutboxEvent]) -> None:
        self._record(self._end_record(job_id, result, event, outbox))
        if self._checkpoint_due():
            self._wal.checkpoint()

    async def _end_async(self, job_id: str, result: pb.CompilationResult, event: pb.JobEvent,
                         outbox: Sequence[pb.OutboxEvent]) -> None:
        await self._record_async(self._end_record(job_id, result, event, outbox))
        if self._checkpoint_due():
            await self._wal.checkpoint_async()

    def _end_record(self, job_id: str, result: pb.CompilationResult, event: pb.JobEvent,
                    outbox: Sequence[pb.OutboxEvent] = ()) -> pb.JobRecord:
        job = self._job(job_id).record
        stored = pb.CompilationResult()
        stored.CopyFrom(result)
        if not stored.job_id:
            stored.job_id = job_id
        return pb.JobRecord(event=event, job_id=job_id, artifact_id=job.artifact_id,
                            sequence=job.sequence, result=stored, outbox=list(outbox))

    def _checkpoint_due(self) -> bool:
        with self._lock:
            due = self._since_checkpoint >= self._wal.options.checkpoint_interval_compilations
            if due:
                self._since_checkpoint = 0
        return due

    # -- queries -------------------------------------------------------------------------------
    def is_completed(self, artifact_id: str) -> bool:
        with self._lock:
            return artifact_id in self._completed

    def result_for(self, artifact_id: str) -> pb.CompilationResult | None:
        """The stored result marked `from_cache`, for answering a repeat of a completed artifact."""
        with self._lock:
            stored = self._completed.get(artifact_id)
            if stored is None:
                return None
            answer = pb.CompilationResult()
            answer.CopyFrom(stored)
        answer.from_cache = True
        return answer

    def state(self) -> JournalState:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.record.priority, j.record.sequence))
            state = JournalState(next_sequence=self._next_sequence)
            for job in jobs:
                copy = pb.JobRecord()
                copy.CopyFrom(job.record)
                if job.attempts:
                    copy.attempts = job.attempts
                if job.record.artifact_id in self._completed:
                    state.already_completed.append(copy)
                elif job.running:
                    state.in_flight.append(copy)
                else:
                    state.pending.append(copy)
            for artifact_id, result in self._completed.items():
                stored = pb.CompilationResult()
                stored.CopyFrom(result)
                state.completed[artifact_id] = stored
            for artifact_id, result in self._failures.items():
                stored = pb.CompilationResult()
                stored.CopyFrom(result)
                state.failures[artifact_id] = stored
            state.unpublished = {job_id: list(events) for job_id, events in self._unpublished.items()}
        return state
