"""The WAL itself: open (with recovery), transactions, state-machine hand-off and checkpoints.

Owns: `Wal` and `Transaction`. A transaction is BEGIN (the encoded `ExecutionContext`) → DATA* →
COMMIT (the Merkle root) or ABORT. BEGIN and DATA wait in the transaction until commit (or
`flush`, or 1 MiB of DATA), then go out in one durable write; the COMMIT goes out in a second: two
barriers per transaction, a write under `O_DSYNC` or write + `fdatasync` in `fsync` mode.
Concurrent committers share each barrier (see `writer`); writing BEGIN and DATA early would cost
every transaction two more trips through the writer and starve group commit (measured in `fsync`
mode: 8 writers 2.3x one writer that way, 7-10x this way).
Committed transactions are handed, in log order and before `commit()` returns, to the attached
state machine (the job journal), which also supplies the snapshot a checkpoint compacts the log to.
Must never import torch or a later stage: crash-test children import only this package.
"""

from __future__ import annotations

import enum
import fcntl
import gc
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tezzeret import metrics
from tezzeret.leyline import codec, pb
from tezzeret.wal import mounts
from tezzeret.wal.errors import (
    WalCorruption,
    WalIOError,
    WalLocked,
    WalStateError,
    WalUnsafeMount,
)
from tezzeret.wal.fileio import FileLayer, OsFileLayer
from tezzeret.wal.format import EntryType, pack_records
from tezzeret.wal.ids import TxnIds
from tezzeret.wal.losses import Loss, LossLedger, now_stamp, utc_now
from tezzeret.wal.merkle import merkle_root, merkle_root_from_hash
from tezzeret.wal.reader import TMP_SUFFIX, list_segments, segment_name
from tezzeret.wal.recovery import (
    CHECKPOINT_OPERATION,
    CommittedTransaction,
    RecoveryReport,
    analyze,
    plan_quarantine,
    repair,
)
from tezzeret.wal.writer import CrashHook, PendingRecord, SegmentWriter

if TYPE_CHECKING:
    from tezzeret.config import WalSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

CRASH_POINTS = (
    "after_begin_before_data",
    "during_compilation_write",
    "during_artifact_write",
    "after_data_before_commit",
    "during_commit_write",
    "after_commit_before_sync",
    "nvme_namespace_teardown_mid_commit",
)
_SPILL_BYTES = 1 << 20
_COMMITTED = metrics.WAL_TRANSACTIONS.labels(status="committed")
# Records carry these very members, so `_on_written` compares them by identity.
_COMMIT, _ABORT = EntryType.COMMIT, EntryType.ABORT
LOCK_NAME = "LOCK"


async def to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread`, with asyncio imported on first use: crash-test children never need
    it and start faster."""
    import asyncio

    return await asyncio.to_thread(func, *args, **kwargs)


@dataclass(frozen=True)
class WalOptions:
    """The subset of `WalSettings` the WAL reads; lets crash-test children skip pydantic."""

    durability_mode: str = "O_DSYNC"
    checkpoint_interval_compilations: int = 10
    max_wal_size_mb: float = 1024
    recovery_validation: str = "strict"
    group_commit_window_us: int = 0

    @classmethod
    def from_settings(cls, settings: WalSettings | WalOptions | None) -> WalOptions:
        if isinstance(settings, WalOptions):
            return settings
        if settings is None:
            from tezzeret.config import WalSettings

            settings = WalSettings()
        return cls(
            durability_mode=settings.durability_mode,
            checkpoint_interval_compilations=settings.checkpoint_interval_compilations,
            max_wal_size_mb=settings.max_wal_size_mb,
            recovery_validation=settings.recovery_validation,
            group_commit_window_us=settings.group_commit_window_us,
        )


class WalStateMachine(Protocol):
    """What the WAL hands committed transactions to (the job journal implements it)."""

    def apply(self, txn: CommittedTransaction) -> None: ...

    def snapshot(self) -> list[bytes]: ...


@dataclass(frozen=True)
class CommitRecord:
    txn_id: str
    merkle_root: str
    data_segments: int


class TxnState(enum.Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ABORTED = "aborted"
    FAILED = "failed"


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Transaction:
    """One BEGIN → DATA* → COMMIT/ABORT. Use from one thread (or one task) at a time."""

    def __init__(self, wal: Wal, context: bytes, epoch: int) -> None:
        self._wal = wal
        self.txn_id_bytes = wal._ids.next()
        self.context_bytes = context
        self.epoch = epoch
        self.state = TxnState.OPEN
        # The BEGIN, then each DATA; the COMMIT or ABORT is written but never kept here.
        self.records: list[PendingRecord] = [self._record(EntryType.BEGIN, context)]
        # How many of `records` are on disk; advanced by the writer under its lock.
        self.written = 0
        # Payload bytes queued since the last write this transaction asked for (spill at 1 MiB).
        self._unwritten_bytes = len(context)
        self._kinds: list[str] = []

    @property
    def txn_id(self) -> str:
        return self.txn_id_bytes.hex()

    def _record(self, entry_type: EntryType, payload: bytes) -> PendingRecord:
        return PendingRecord(self.txn_id_bytes, entry_type, payload, _sha(payload), self.epoch, self)

    def _require_open(self, action: str) -> None:
        if self.state is not TxnState.OPEN:
            raise WalStateError(
                f"cannot {action} transaction {self.txn_id}: it is {self.state.value}"
            )

    def _write_pending(self, *, durable: bool) -> None:
        pending = self.records[self.written :]
        if pending or durable:
            self._wal._writer.append(pending, durable=durable)

    def data(self, payload: bytes, *, kind: str = "compilation") -> None:
        """Add one DATA segment. `kind` is "artifact" or "compilation" (metadata)."""
        spill = self._add_data(payload, kind)
        if spill:
            self._wal._writer.append(spill, durable=True)

    def _add_data(self, payload: bytes, kind: str) -> list[PendingRecord]:
        """Queue one DATA record; what must be written now (past 1 MiB unwritten), or nothing."""
        self._require_open("add data to")
        if kind not in ("artifact", "compilation"):
            raise WalStateError(f"DATA kind must be 'artifact' or 'compilation', not {kind!r}")
        record = self._record(EntryType.DATA, bytes(payload))
        self.records.append(record)
        self._kinds.append(kind)
        self._unwritten_bytes += len(record.payload)
        if self._unwritten_bytes < _SPILL_BYTES:
            return []
        self._fire_data_hooks()
        return self.records[self.written :]

    def _fire_data_hooks(self) -> None:
        """Run the crash hooks for the kinds of DATA about to be written; a write is coming, so
        the spill count starts again."""
        self._unwritten_bytes = 0
        if self._wal._crash_hook is not None:
            for kind in dict.fromkeys(self._kinds):
                self._wal._hook(f"during_{kind}_write")
        self._kinds.clear()

    def flush(self) -> None:
        """Make BEGIN and the DATA so far durable now (e.g. to log intent before a side effect)."""
        self._require_open("flush")
        self._fire_data_hooks()
        self._write_pending(durable=True)

    def commit(self) -> CommitRecord:
        """Barrier, COMMIT, barrier; returns once the COMMIT record is durable. Both barriers are
        taken in one trip through the writer, shared with whoever else is committing."""
        self._require_open("commit")
        self.state = TxnState.COMMITTING
        try:
            records, then = self._commit_records()
            self._wal._writer.append(records, durable=True, then=then, between=self._wal._between)
        except BaseException:
            self.state = TxnState.FAILED
            raise
        return self._committed(then[0])

    def _commit_records(self) -> tuple[list[PendingRecord], list[PendingRecord]]:
        """What is still unwritten (barrier 1 makes BEGIN and every DATA durable), and the COMMIT."""
        self._fire_data_hooks()
        begin, *data = self.records  # the BEGIN's digest is the context's
        root = merkle_root_from_hash(begin.sha256, [r.sha256 for r in data])
        return self.records[self.written :], [self._record(EntryType.COMMIT, root.encode())]

    def _committed(self, commit: PendingRecord) -> CommitRecord:
        return CommitRecord(self.txn_id, commit.payload.decode(), len(self.records) - 1)

    def abort(self) -> None:
        """Roll back. Writes a durable ABORT only if some of this transaction reached the log."""
        record = self._abort_record()
        if record:
            self._wal._writer.append(record, durable=True)

    def _abort_record(self) -> list[PendingRecord]:
        """Mark the transaction aborted; the ABORT record to write, if any of it is on disk."""
        if self.state in (TxnState.ABORTED, TxnState.COMMITTED):
            if self.state is TxnState.COMMITTED:
                raise WalStateError(f"transaction {self.txn_id} is already committed")
            return []
        self.state = TxnState.ABORTED
        metrics.WAL_TRANSACTIONS.labels(status="aborted").inc()
        if self.written:
            return [self._record(EntryType.ABORT, b"")]
        self._wal._forget(self.txn_id_bytes)
        return []

    # The async forms queue their writes on the writer and await the batch (see
    # `SegmentWriter.append_async`): no thread per call, and the loop never blocks on the disk.
    async def data_async(self, payload: bytes, *, kind: str = "compilation") -> None:
        spill = self._add_data(payload, kind)
        if spill:
            await self._wal._writer.append_async(spill, durable=True)

    async def flush_async(self) -> None:
        self._require_open("flush")
        self._fire_data_hooks()
        await self._wal._writer.append_async(self.records[self.written :], durable=True)

    async def commit_async(self) -> CommitRecord:
        self._require_open("commit")
        self.state = TxnState.COMMITTING
        try:
            records, then = self._commit_records()
            await self._wal._writer.append_async(records, durable=True, then=then,
                                                 between=self._wal._between)
        except BaseException:
            self.state = TxnState.FAILED
            raise
        return self._committed(then[0])

    async def abort_async(self) -> None:
        record = self._abort_record()
        if record:
            await self._wal._writer.append_async(record, durable=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.state is TxnState.OPEN:
            if exc_type is None:
                self.commit()
            else:
                self.abort()


class Wal:
    """Open with `Wal.open(directory)`; recovery has run when it returns (`wal.recovery`)."""

    def __init__(self) -> None:  # use Wal.open
        raise TypeError("use Wal.open(directory, settings)")

    @classmethod
    def open(
        cls,
        directory: Path,
        settings: WalSettings | WalOptions | None = None,
        *,
        file_layer: FileLayer | None = None,
        crash_hook: CrashHook | None = None,
    ) -> Wal:
        self = object.__new__(cls)
        self._init(Path(directory), WalOptions.from_settings(settings), file_layer, crash_hook)
        return self

    @classmethod
    async def open_async(
        cls,
        directory: Path,
        settings: WalSettings | WalOptions | None = None,
        *,
        file_layer: FileLayer | None = None,
        crash_hook: CrashHook | None = None,
    ) -> Wal:
        return await to_thread(
            cls.open, directory, settings, file_layer=file_layer, crash_hook=crash_hook
        )

    # -- opening and recovery ----------------------------------------------------------------
    def _init(
        self,
        directory: Path,
        options: WalOptions,
        file_layer: FileLayer | None,
        crash_hook: CrashHook | None,
    ) -> None:
        self.directory = directory
        self.options = options
        self._files: FileLayer = file_layer or OsFileLayer()
        self._crash_hook = crash_hook
        # What the writer runs between a commit's two barriers: only the crash hooks, so nothing
        # at all without them (a call per commit on the writer's critical path).
        self._between = self._commit_hooks if crash_hook is not None else None
        self._lock = threading.Lock()
        self._open_txns: dict[bytes, Transaction] = {}
        self._ids = TxnIds()
        self._sm: WalStateMachine | None = None
        self._live_commits = 0
        self._closed = False
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise WalLocked(
                f"another process has the WAL in {directory} open; stop it, or point this one "
                "at a different wal.path"
            ) from None
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _recover(self) -> None:
        # Recovery builds a few objects per transaction and no cycles; a cyclic-GC pass over all
        # of them in the middle of it cost a fifth of recovering 100k transactions.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._recover_unmanaged()
        finally:
            if enabled:
                gc.enable()

    def _recover_unmanaged(self) -> None:
        directory = self.directory
        verdict = mounts.check_directory(directory)
        if verdict.unsafe and self.options.recovery_validation == "strict":
            raise WalUnsafeMount(
                "refusing to open the WAL: " + "; ".join(verdict.unsafe)
                + " (or set wal.recovery_validation: warn to run anyway)"
            )
        for warning in verdict.unsafe + verdict.notes:
            log.warning("WAL durability: %s", warning)
        start = time.perf_counter()
        analysis = analyze(directory, exclusive=True)  # this process holds the LOCK
        if analysis.history_missing:
            # Starting on a partial history would re-run (or forget) work the lost part recorded;
            # leave every file as it is for the operator.
            metrics.WAL_RECOVERY.labels(outcome="failed").inc()
            problem = next(p for p in analysis.problems if p.kind == "history_missing")
            raise WalCorruption(
                f"cannot recover the WAL in {directory}: {problem.describe()}. Restore the missing "
                "segments from a backup, or move the directory aside to start with an empty log "
                "(`tezzeret wal verify` lists what is there)",
                segment=problem.segment, offset=problem.offset,
            )
        ledger = self._ledger = LossLedger(directory, holds_lock=True)
        ledger.unacknowledged()  # an unreadable ledger stops the open (WalCorruption)
        stamp = now_stamp()
        plan = plan_quarantine(analysis, stamp)
        outcome = analysis.outcome
        loss: Loss | None = None
        if analysis.damaged:
            # Recorded durably before a byte moves: a process that dies in `repair`, or one
            # restarted later, still knows what this recovery gave up.
            candidate = Loss(
                loss_id=f"loss-{stamp}", recorded_at=utc_now(), outcome=outcome,
                lost_transactions=list(analysis.lost), in_doubt_transactions=list(analysis.in_doubt),
                quarantined=plan, problems=[p.describe() for p in analysis.problems],
                base_checkpoint=analysis.base_checkpoint,
            )
            if ledger.is_new(candidate):
                ledger.record(candidate)
                loss = candidate
        truncated, quarantined = repair(analysis, plan)
        unaccounted = ledger.record_unaccounted()
        if unaccounted is not None:
            log.warning("WAL recovery: %s", unaccounted.describe())
        segments = list_segments(directory)
        dsync = self.options.durability_mode == "O_DSYNC"
        if not segments:
            index, end = 1, 0
            handle = self._files.open_at(directory / segment_name(1), dsync=dsync, create=True)
            self._files.fsync_dir(directory)
        else:
            index, path = segments[-1]
            # The records end where the scan stopped (repair cut anything bad there); zeros
            # preallocated after them are overwritten from that point on.
            end = analysis.end_of(index)
            handle = self._files.open_at(path, dsync=dsync, create=False, offset=end)
        self._writer = SegmentWriter(
            directory,
            self._files,
            dsync=dsync,
            max_segment_bytes=int(self.options.max_wal_size_mb * 1024 * 1024),
            index=index,
            handle=handle,
            size=end,
            allocated=self._files.size(handle),
            next_sequence=analysis.last_sequence + 1,
            group_window_s=self.options.group_commit_window_us / 1e6,
            in_flight=self._open_count,
            on_written=self._on_written,
            crash_hook=self._crash_hook,
        )
        # Open transactions are rolled back: one durable ABORT each, in one write.
        if analysis.open:
            self._writer.append(
                [
                    PendingRecord(bytes.fromhex(t.txn_id), EntryType.ABORT, b"", _sha(b""), t.epoch)
                    for t in analysis.open
                ],
                durable=True,
            )
        duration_ms = (time.perf_counter() - start) * 1000
        self._recovered = analysis.committed
        self._last_checkpoint = analysis.base_checkpoint
        self.recovery = RecoveryReport(
            outcome=outcome,
            committed=sum(1 for t in analysis.committed if not t.is_checkpoint),
            aborted=len(analysis.open),
            previously_aborted=analysis.previously_aborted,
            truncated_bytes=truncated,
            quarantined_bytes=quarantined,
            lost_transactions=list(analysis.lost),
            in_doubt_transactions=list(analysis.in_doubt),
            rolled_back=analysis.rolled_back,
            quarantined=plan,
            loss_id=loss.loss_id if loss is not None else None,
            duration_ms=duration_ms,
            segments=[p.name for _, p in list_segments(directory)],
            base_checkpoint=analysis.base_checkpoint,
            problems=list(analysis.problems),
            mount_warnings=verdict.unsafe + verdict.notes,
            open_transactions=list(analysis.open),
        )
        for problem in analysis.problems:
            log.warning("WAL recovery: %s", problem.describe())
        metrics.WAL_RECOVERY.labels(outcome=outcome).inc()
        metrics.WAL_RECOVERY_DURATION_MS.observe(duration_ms)
        if analysis.open:
            metrics.WAL_TRANSACTIONS.labels(status="aborted").inc(len(analysis.open))
        if analysis.lost:
            metrics.WAL_TRANSACTIONS.labels(status="lost").inc(len(analysis.lost))
        if loss is not None:
            log.error("WAL recovery lost data; recorded as %s until acknowledged: %s",
                      loss.loss_id, loss.describe())

    # -- the transaction API -------------------------------------------------------------------
    @property
    def dsync(self) -> bool:
        return self._writer.dsync

    @property
    def syncs(self) -> int:
        """Durability barriers issued so far (O_DSYNC writes count as one each)."""
        return self._writer.syncs

    @property
    def path(self) -> Path:
        return self.directory

    def size_bytes(self) -> int:
        """Bytes of records in the live segments: earlier segments whole (rotation cut their
        preallocated zeros), the current one up to its last record."""
        return self._writer.size + sum(
            p.stat().st_size for i, p in list_segments(self.directory) if i != self._writer.index
        )

    @property
    def sequence(self) -> int:
        """Sequence number of the last record written."""
        return self._writer.next_sequence - 1

    @property
    def last_checkpoint(self) -> str | None:
        """The segment that starts with the newest checkpoint, if any."""
        return self._last_checkpoint

    def _hook(self, point: str) -> None:
        if self._crash_hook is not None:
            self._crash_hook(point)

    def _commit_hooks(self) -> None:
        """The writer calls this between a commit's two barriers."""
        if self._crash_hook is not None:
            for point in ("after_data_before_commit", "during_commit_write",
                          "nvme_namespace_teardown_mid_commit"):
                self._crash_hook(point)

    def begin(
        self, context: pb.ExecutionContext, *, epoch: int = 0, durable: bool = False
    ) -> Transaction:
        """Start a transaction. `durable` makes BEGIN durable before returning (intent logging);
        otherwise it becomes durable with the first barrier of `flush` or `commit`."""
        txn = self._open_transaction(context, epoch)
        if durable:
            txn._write_pending(durable=True)
        self._hook("after_begin_before_data")
        return txn

    async def begin_async(
        self, context: pb.ExecutionContext, *, epoch: int = 0, durable: bool = False
    ) -> Transaction:
        txn = self._open_transaction(context, epoch)
        if durable:
            await self._writer.append_async(txn.records[txn.written :], durable=True)
        self._hook("after_begin_before_data")
        return txn

    def _open_transaction(self, context: pb.ExecutionContext, epoch: int) -> Transaction:
        if self._closed:
            raise WalStateError(f"the WAL in {self.directory} is closed")
        if context.operation == CHECKPOINT_OPERATION:
            raise WalStateError(
                f"operation {CHECKPOINT_OPERATION!r} is reserved for the WAL's own checkpoints; "
                "name the transaction's operation something else"
            )
        if not context.HasField("schema_version"):
            context = pb.ExecutionContext.FromString(context.SerializeToString())
            context.schema_version = codec.SCHEMA_VERSION
        txn = Transaction(self, codec.encode(context), epoch)
        with self._lock:
            self._open_txns[txn.txn_id_bytes] = txn
        return txn

    def _open_count(self) -> int:
        return len(self._open_txns)

    def _forget(self, *txn_ids: bytes) -> None:
        """Drop ended transactions from the open ones (one lock hold for any number)."""
        with self._lock:
            for txn_id in txn_ids:
                self._open_txns.pop(txn_id, None)

    def _on_written(self, records: list[PendingRecord]) -> None:
        """Runs in the leader, under the writer lock, in log order, before any waiter returns.
        It sits between a round's barrier and the wake-up of its committers, so it does little:
        one metric update and one `_forget` for the round, not one per commit (each takes a
        lock)."""
        ended: list[bytes] = []
        commits = 0
        try:
            for record in records:
                txn = record.owner
                if txn is None:
                    continue
                etype = record.entry_type
                if etype is _COMMIT:
                    txn.state = TxnState.COMMITTED
                    ended.append(txn.txn_id_bytes)
                    commits += 1
                    if self._sm is not None:
                        self._sm.apply(CommittedTransaction(
                            txn.txn_id, txn.context_bytes,
                            [r.payload for r in txn.records[1:]],
                            record.payload.decode(), txn.epoch, segment_name(self._writer.index),
                        ))
                elif etype is _ABORT:
                    ended.append(txn.txn_id_bytes)
                else:  # a BEGIN or DATA
                    txn.written += 1
        finally:
            if ended:
                self._forget(*ended)
            if commits:
                self._live_commits += commits
                _COMMITTED.inc(commits)

    # -- losses ----------------------------------------------------------------------------------
    def unacknowledged_losses(self) -> list[Loss]:
        """What recoveries of this log gave up (lost or in-doubt transactions, quarantined bytes)
        and nobody has acknowledged yet, oldest first. Kept in `losses.json` across restarts."""
        return self._ledger.unacknowledged()

    def acknowledge_losses(self, by: str, *, loss_ids: Sequence[str] | None = None) -> list[Loss]:
        """Record that `by` has seen the unacknowledged losses (all, or those named), durably
        on return; returns them. They move to the ledger's history with who and when, plus an
        audit line; the quarantined bytes stay where they are."""
        if self._closed:
            raise WalStateError(f"the WAL in {self.directory} is closed")
        return self._ledger.acknowledge(by, None if loss_ids is None else list(loss_ids))

    # -- state machine and checkpoints --------------------------------------------------------
    def recovered_transactions(self) -> list[CommittedTransaction]:
        """Committed transactions found by recovery, in commit order (a checkpoint first, if any)."""
        return list(self._recovered)

    def attach(self, machine: WalStateMachine) -> None:
        """Replay what recovery found into `machine`, then hand it every later commit. Attach
        right after `open`: commits made before attaching would never reach it."""
        with self._writer.exclusive():
            if self._sm is not None:
                raise WalStateError("a state machine is already attached to this WAL")
            if self._live_commits:
                raise WalStateError(
                    f"{self._live_commits} transactions committed before the state machine was "
                    "attached; attach it right after Wal.open"
                )
            for txn in self._recovered:
                machine.apply(txn)
            self._sm = machine

    def checkpoint(self) -> str:
        """Compact the log: write a new segment that starts with the state machine's snapshot (as
        one committed CHECKPOINT transaction) followed by copies of the records of transactions
        still open, make it durable, then delete the older segments. Returns the new segment name."""
        if self._sm is None:
            raise WalStateError("checkpoint needs an attached state machine (the job journal)")
        writer = self._writer
        files = self._files
        with writer.exclusive():
            snapshot = self._sm.snapshot()
            index = writer.index + 1
            ckpt = self._ids.next()
            ctx = codec.encode(pb.ExecutionContext(
                schema_version=codec.SCHEMA_VERSION, operation=CHECKPOINT_OPERATION
            ))
            records = [PendingRecord(ckpt, EntryType.BEGIN, ctx, _sha(ctx), 0)]
            records += [PendingRecord(ckpt, EntryType.DATA, p, _sha(p), 0) for p in snapshot]
            root = merkle_root(ctx, [r.sha256 for r in records[1:]]).encode()
            records.append(PendingRecord(ckpt, EntryType.COMMIT, root, _sha(root), 0))
            with self._lock:
                still_open = [t for t in self._open_txns.values() if t.written]
            for txn in still_open:
                records.extend(txn.records[: txn.written])
            seq = writer.next_sequence
            data = pack_records(records, sequence=seq, offset=0, timestamp_ns=time.time_ns())
            seq += len(records)
            offset = len(data)
            final = self.directory / segment_name(index)
            tmp = final.with_name(final.name + TMP_SUFFIX)
            try:
                handle = files.open_at(tmp, dsync=False, create=True)
                files.write(handle, data)
                files.sync(handle)
                files.close(handle)
                files.rename(tmp, final)
                files.fsync_dir(self.directory)
                handle = files.open_at(final, dsync=writer.dsync, create=False)
                writer.switch_segment(index, handle, offset, seq)
                for old_index, path in list_segments(self.directory):
                    if old_index < index:
                        files.unlink(path)
                files.fsync_dir(self.directory)
                self._last_checkpoint = final.name
            except OSError as exc:
                writer.poison(exc)
                raise WalIOError(f"checkpoint into {final} failed: {exc}") from exc
        return final.name

    async def checkpoint_async(self) -> str:
        return await to_thread(self.checkpoint)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        os.close(self._lock_fd)

    async def close_async(self) -> None:
        await to_thread(self.close)

    def __enter__(self) -> Wal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
