"""The job journal: queue order, requeue after a crash, from_cache answers, compaction.

Includes the two hypothesis properties of the issue, driven through a model of the forge's loop
(submit → enqueue unless completed; work → started → finished, or crash mid-compile; restart):
(a) within one priority, jobs run in submission order, across restarts; (b) no artifact id is
compiled twice across up to five restarts, and repeats of a completed one are answered from_cache.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tezzeret.leyline import pb
from tezzeret.wal import JobJournal, Wal, WalIOError, WalOptions, WalStateError
from tezzeret.wal.fileio import OsFileLayer
from tezzeret.wal.reader import list_segments

import pytest


def _open(directory: Path, interval: int = 10, mode: str = "O_DSYNC") -> tuple[Wal, JobJournal]:
    wal = Wal.open(directory, WalOptions(durability_mode=mode, checkpoint_interval_compilations=interval))
    return wal, JobJournal(wal)


def _result(artifact_id: str, job_id: str = "") -> pb.CompilationResult:
    return pb.CompilationResult(job_id=job_id, artifact_id=artifact_id, success=True,
                                outcome=pb.OUTCOME_SUCCESS, payload_sha256="ab" * 32)


def test_pending_order_is_priority_then_fifo(tmp_path: Path) -> None:
    wal, journal = _open(tmp_path)
    jobs = [("j1", 3), ("j2", 5), ("j3", 1), ("j4", 3), ("j5", 1), ("j6", 2)]
    seqs = [journal.enqueue(j, f"a-{j}", p, f"req-{j}".encode()) for j, p in jobs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert journal.enqueue("j1", "a-j1", 3, b"again") == seqs[0]  # idempotent by job id
    order = [j.job_id for j in journal.state().pending]
    assert order == ["j3", "j5", "j6", "j1", "j4", "j2"]
    assert journal.state().pending[0].request == b"req-j3"
    wal.close()
    wal, journal = _open(tmp_path)
    assert [j.job_id for j in journal.state().pending] == order
    assert journal.enqueue("j7", "a-j7", 1, b"") > max(seqs)
    wal.close()


def test_started_jobs_go_back_to_their_place_after_a_crash(tmp_path: Path) -> None:
    wal, journal = _open(tmp_path)
    for j in ("a", "b", "c"):
        journal.enqueue(j, f"art-{j}", pb.PRIORITY_NORMAL, b"")
    journal.started("a")
    journal.started("b")
    state = journal.state()
    assert [j.job_id for j in state.in_flight] == ["a", "b"]
    assert [j.job_id for j in state.pending] == ["c"]
    journal.finished("b", _result("art-b"))
    wal.close()  # "a" was mid-compile
    wal, journal = _open(tmp_path)
    assert wal.recovery.requeued_jobs == ["a"]
    state = journal.state()
    assert [j.job_id for j in state.pending] == ["a", "c"]
    assert state.pending[0].attempts == 1
    assert journal.is_completed("art-b") and not journal.is_completed("art-a")
    cached = journal.result_for("art-b")
    assert cached is not None and cached.from_cache and cached.job_id == "b"
    assert not state.completed["art-b"].from_cache
    wal.close()


def test_errors_name_the_job(tmp_path: Path) -> None:
    wal, journal = _open(tmp_path)
    with pytest.raises(WalStateError, match="job nope"):
        journal.started("nope")
    with pytest.raises(WalStateError, match="priority 9"):
        journal.enqueue("x", "a", 9, b"")
    wal.close()


def test_failures_are_kept_and_retryable(tmp_path: Path) -> None:
    wal, journal = _open(tmp_path)
    journal.enqueue("j", "art", pb.PRIORITY_NORMAL, b"")
    journal.started("j")
    journal.failed("j", pb.CompilationResult(success=False, outcome=pb.OUTCOME_TIMEOUT))
    state = journal.state()
    assert not state.pending and state.failures["art"].outcome == pb.OUTCOME_TIMEOUT
    assert not journal.is_completed("art")
    journal.enqueue("j2", "art", pb.PRIORITY_NORMAL, b"")
    wal.close()
    wal, journal = _open(tmp_path)
    assert [j.job_id for j in journal.state().pending] == ["j2"]
    wal.close()


def test_checkpoints_compact_without_changing_state(tmp_path: Path, mode: str) -> None:
    wal, journal = _open(tmp_path, interval=5, mode=mode)
    for i in range(40):
        journal.enqueue(f"j{i}", f"art{i % 30}", 1 + i % 5, f"req{i}".encode() * 10)
    for i in range(0, 40, 2):
        journal.started(f"j{i}")
        if i % 3:
            journal.finished(f"j{i}", _result(f"art{i % 30}", f"j{i}"))
        else:
            journal.failed(f"j{i}", pb.CompilationResult(success=False))
    open_txn = wal.begin(pb.ExecutionContext(operation="COMPILATION_CHECKPOINT"), durable=True)
    open_txn.data(b"spans a checkpoint")
    open_txn.flush()
    journal.started("j1")  # in flight across the restart
    journal.enqueue("late", "late-art", 1, b"")
    journal.started("late")
    journal.finished("late", _result("late-art", "late"))
    wal.checkpoint()  # with `open_txn` still open: its records are carried into the new segment
    before = journal.state()
    assert wal.last_checkpoint is not None
    assert len(list_segments(tmp_path)) == 1
    open_txn.data(b"after the checkpoint")
    open_txn.commit()
    wal.close()
    wal, journal = _open(tmp_path, interval=5, mode=mode)
    after = journal.state()
    assert wal.recovery.base_checkpoint == list_segments(tmp_path)[0][1].name
    assert after.completed == before.completed and after.failures == before.failures
    # j1 was in flight: it is pending again, in its original place.
    assert [j.job_id for j in after.pending] == sorted(
        [j.job_id for j in before.pending + before.in_flight],
        key=lambda jid: next((j.priority, j.sequence) for j in before.pending + before.in_flight if j.job_id == jid),
    )
    assert after.next_sequence == before.next_sequence
    spanning = [t for t in wal.recovered_transactions() if t.txn_id == open_txn.txn_id]
    assert spanning and spanning[0].payloads == [b"spans a checkpoint", b"after the checkpoint"]
    wal.close()


def test_log_stays_bounded(tmp_path: Path) -> None:
    wal, journal = _open(tmp_path, interval=10)
    sizes = []
    for i in range(120):
        journal.enqueue(f"j{i}", "same-artifact" if i % 2 else f"a{i}", 3, b"r" * 2000)
        journal.started(f"j{i}")
        journal.failed(f"j{i}", pb.CompilationResult(success=False))
        sizes.append(wal.size_bytes())
    assert max(sizes[60:]) < 2 * max(sizes[:40])
    wal.close()


# -- hypothesis: the forge's loop, with crashes and restarts ------------------------------------

Submit = st.tuples(st.just("submit"), st.integers(0, 5), st.integers(1, 5))
Work = st.tuples(st.just("work"), st.booleans(), st.just(0))
Restart = st.tuples(st.just("restart"), st.just(0), st.just(0))


@dataclass
class ForgeModel:
    directory: Path
    interval: int
    wal: Wal = field(init=False)
    journal: JobJournal = field(init=False)
    restarts: int = 0
    counter: int = 0
    submitted: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # job -> (prio, n, art)
    done_order: list[str] = field(default_factory=list)
    compiles: dict[str, int] = field(default_factory=dict)
    from_cache: int = 0

    def __post_init__(self) -> None:
        self.wal, self.journal = _open(self.directory, self.interval, "fsync")

    def restart(self) -> None:
        self.wal.close()
        self.restarts += 1
        self.wal, self.journal = _open(self.directory, self.interval, "fsync")

    def submit(self, art: int, prio: int) -> None:
        artifact = f"art-{art}"
        if self.journal.is_completed(artifact):
            answer = self.journal.result_for(artifact)
            assert answer is not None and answer.from_cache
            self.from_cache += 1
            return
        state = self.journal.state()
        if any(j.artifact_id == artifact for j in state.pending + state.in_flight):
            return  # joins the job already queued
        self.counter += 1
        job = f"job-{self.counter}"
        self.journal.enqueue(job, artifact, prio, artifact.encode())
        self.submitted[job] = (prio, self.counter, artifact)

    def work(self, crash: bool) -> None:
        pending = self.journal.state().pending
        if not pending:
            return
        head = pending[0]
        live = [j for j in self.submitted if j not in self.done_order]
        expected = min(live, key=lambda j: self.submitted[j][:2])
        assert head.job_id == expected, "the queue head is not the oldest job of the top priority"
        assert head.priority == self.submitted[head.job_id][0]
        self.journal.started(head.job_id)
        if crash:
            self.restart()
            assert self.journal.state().pending[0].job_id == head.job_id
            return
        self.compiles[head.artifact_id] = self.compiles.get(head.artifact_id, 0) + 1
        self.journal.finished(head.job_id, _result(head.artifact_id, head.job_id))
        self.done_order.append(head.job_id)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(Submit, Work, Restart), min_size=5, max_size=40),
       interval=st.integers(1, 4))
def test_property_fifo_within_priority_and_at_most_once(ops: list[tuple[str, int, int]], interval: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = ForgeModel(Path(tmp), interval)
        for kind, a, b in ops:
            if kind == "restart" or (kind == "work" and a):
                if model.restarts >= 5:
                    continue
            if kind == "submit":
                model.submit(a, b)
            elif kind == "work":
                model.work(bool(a))
            else:
                model.restart()
        # Drain what is left, then ask for everything again: all answered from the cache.
        while model.journal.state().pending:
            model.work(False)
        for art in range(6):
            if f"art-{art}" in model.compiles:
                before = model.from_cache
                model.submit(art, 3)
                assert model.from_cache == before + 1
        model.wal.close()
        # (b) at most one compile per artifact id.
        assert all(n == 1 for n in model.compiles.values()), model.compiles
        # (a) within each priority, completion order is submission order.
        for prio in range(1, 6):
            seq = [model.submitted[j][1] for j in model.done_order if model.submitted[j][0] == prio]
            assert seq == sorted(seq)


class _FailAt(OsFileLayer):
    """Fails the first call of one operation, as a crash at that instant of a checkpoint would."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def rename(self, src: Path, dst: Path) -> None:
        if self.operation == "rename":
            raise OSError(5, "injected failure before rename")
        super().rename(src, dst)

    def unlink(self, path: Path) -> None:
        if self.operation == "unlink":
            raise OSError(5, "injected failure before deleting old segments")
        super().unlink(path)


@pytest.mark.parametrize("operation", ["rename", "unlink"])
def test_a_checkpoint_cut_short_loses_nothing(tmp_path: Path, operation: str) -> None:
    wal = Wal.open(tmp_path, WalOptions(checkpoint_interval_compilations=1000),
                   file_layer=_FailAt(operation))
    journal = JobJournal(wal)
    for i in range(6):
        journal.enqueue(f"j{i}", f"a{i}", 1 + i % 3, b"r")
    for i in range(3):
        journal.started(f"j{i}")
        journal.finished(f"j{i}", _result(f"a{i}", f"j{i}"))
    journal.started("j3")
    before = journal.state()
    with pytest.raises(WalIOError):
        wal.checkpoint()
    with pytest.raises(WalIOError):
        journal.enqueue("refused", "x", 1, b"")  # the writer stays poisoned until restart
    wal.close()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.endswith(".tmp") for n in leftovers) == (operation == "rename")
    wal, journal = _open(tmp_path)
    after = journal.state()
    assert after.completed == before.completed
    assert [j.job_id for j in after.pending] == [j.job_id for j in sorted(
        before.pending + before.in_flight, key=lambda j: (j.priority, j.sequence))]
    names = [p.name for p in tmp_path.iterdir() if p.name.startswith("wal-")]
    assert len(names) == 1 and not any(n.endswith(".tmp") for n in names)
    assert (wal.recovery.base_checkpoint is not None) == (operation == "unlink")
    wal.close()


def test_async_twins(tmp_path: Path) -> None:
    import asyncio

    async def main() -> list[str]:
        wal = await Wal.open_async(tmp_path)
        journal = JobJournal(wal)
        seqs = await asyncio.gather(*(journal.enqueue_async(f"j{i}", f"a{i}", 3, b"") for i in range(8)))
        assert sorted(seqs) == list(range(1, 9))
        await journal.started_async("j0")
        await journal.finished_async("j0", _result("a0", "j0"))
        await journal.started_async("j1")
        await journal.failed_async("j1", pb.CompilationResult(success=False))
        await wal.close_async()
        return [j.job_id for j in journal.state().pending]

    pending = asyncio.run(main())
    wal, journal = _open(tmp_path)
    assert [j.job_id for j in journal.state().pending] == pending and len(pending) == 6
    assert journal.is_completed("a0") and "a1" in journal.state().failures
    wal.close()
