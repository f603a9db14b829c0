"""The segment writer: sequence numbers, offsets, rotation, barriers and group commit.

Owns: the one open segment file. Callers hand it lists of records to append; one caller at a
time becomes the leader, takes everything queued, packs headers (sequence, offset, next offset,
CRC) and writes it with one `write` (durable on return under `O_DSYNC`) or one `write` + one
`fdatasync` when any item in the batch asked for durability. Everyone whose records were in the
batch returns together, which is group commit: many commits, one sync, and no commit returns
before its record is durable. After a failed write or sync the writer is poisoned: the page cache
can no longer be trusted, so the process must restart and recover. Must never decide what records
mean; the `on_written` callback (run under the writer lock, in log order) does that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tezzeret import metrics
from tezzeret.wal.errors import WalIOError, WalStateError
from tezzeret.wal.fileio import FileLayer
from tezzeret.wal.format import EntryType, pack_record
from tezzeret.wal.reader import segment_name

CrashHook = Callable[[str], None]


@dataclass(slots=True)
class PendingRecord:
    txn_id: bytes
    entry_type: EntryType
    payload: bytes
    sha256: bytes
    epoch: int
    owner: Any = None  # the Transaction, for the on_written callback


class SegmentWriter:
    def __init__(
        self,
        directory: Path,
        files: FileLayer,
        *,
        dsync: bool,
        max_segment_bytes: int,
        index: int,
        handle: int,
        size: int,
        next_sequence: int,
        group_window_s: float,
        on_written: Callable[[list[PendingRecord]], None],
        crash_hook: CrashHook | None,
    ) -> None:
        self.directory = directory
        self._files = files
        self._dsync = dsync and files.dsync_active(handle)
        self._max = max_segment_bytes
        self.index = index
        self._handle = handle
        self.size = size
        self.next_sequence = next_sequence
        self._window = group_window_s
        self._on_written = on_written
        self._hook = crash_hook
        self._cond = threading.Condition()
        self._queue: list[tuple[int, list[PendingRecord], bool]] = []
        self._next_ticket = 1
        self._done = 0
        self._busy = False
        self._failed: WalIOError | None = None
        self._closed = False
        self.syncs = 0

    @property
    def dsync(self) -> bool:
        return self._dsync

    def _check(self) -> None:
        if self._closed:
            raise WalStateError(f"the WAL in {self.directory} is closed")
        if self._failed is not None:
            raise WalIOError(
                f"the WAL in {self.directory} failed earlier ({self._failed}); restart the "
                "process so recovery can run"
            )

    def append(self, records: list[PendingRecord], *, durable: bool) -> None:
        """Write `records` (may be empty: a pure barrier); return once written, and durable if
        `durable`. Blocks the calling thread; async callers run it in a worker thread."""
        with self._cond:
            self._check()
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append((ticket, records, durable))
            while self._done < ticket:
                self._check()
                if self._busy:
                    self._cond.wait()
                    continue
                self._lead()

    def _lead(self) -> None:
        """Called with the lock held and no leader active; writes one batch."""
        self._busy = True
        error: BaseException | None = None
        try:
            if self._window > 0:
                self._cond.release()
                try:
                    time.sleep(self._window)
                finally:
                    self._cond.acquire()
            batch, self._queue = self._queue, []
            self._cond.release()
            try:
                written = self._write_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - whatever it was, the batch's fate is unknown
                error = exc
            finally:
                self._cond.acquire()
            if error is None:
                self._done = batch[-1][0]
                self._on_written(written)
        finally:
            self._busy = False
            if error is not None:
                self._failed = WalIOError(f"write or sync failed: {error}")
            self._cond.notify_all()
        if isinstance(error, OSError):
            self._check()
        elif error is not None:
            raise error

    def _write_batch(self, batch: list[tuple[int, list[PendingRecord], bool]]) -> list[PendingRecord]:
        records = [r for _, recs, _ in batch for r in recs]
        need_sync = any(d for _, _, d in batch)
        total = sum(256 + len(r.payload) for r in records)
        if records and self.size > 0 and self.size + total > self._max:
            self._rotate()
        parts = []
        offset = self.size
        now = time.time_ns()
        seq = self.next_sequence
        has_commit = False
        for r in records:
            parts.append(pack_record(
                txn_id=r.txn_id, sequence=seq, epoch=r.epoch, timestamp_ns=now,
                entry_type=r.entry_type, payload=r.payload, payload_sha256=r.sha256,
                offset=offset,
            ))
            seq += 1
            offset += 256 + len(r.payload)
            has_commit = has_commit or r.entry_type == EntryType.COMMIT
        if parts:
            start = time.perf_counter()
            self._files.write(self._handle, b"".join(parts))
            if self._dsync:
                # Under O_DSYNC the write is the barrier: it returns once the data is durable.
                self.syncs += 1
                metrics.WAL_FSYNC_DURATION_MS.observe((time.perf_counter() - start) * 1000)
            self.size = offset
            self.next_sequence = seq
        if has_commit and self._hook is not None:
            self._hook("after_commit_before_sync")
        if need_sync and not self._dsync:
            self._sync()
        return records

    def _sync(self) -> None:
        start = time.perf_counter()
        self._files.sync(self._handle)
        self.syncs += 1
        metrics.WAL_FSYNC_DURATION_MS.observe((time.perf_counter() - start) * 1000)

    def _rotate(self) -> None:
        # Everything in the old segment becomes durable before the new one exists, so recovery
        # never sees a later segment while an earlier one still has unsynced bytes.
        self._sync()
        self._files.close(self._handle)
        self.index += 1
        path = self.directory / segment_name(self.index)
        self._handle = self._files.open_append(path, dsync=self._dsync, create=True)
        self._files.fsync_dir(self.directory)
        self.size = 0

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the leader role (no writes by anyone else) for a checkpoint."""
        with self._cond:
            self._check()
            while self._busy:
                self._cond.wait()
                self._check()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def switch_segment(self, index: int, handle: int, size: int, next_sequence: int) -> None:
        """Inside `exclusive`: continue in a segment the checkpoint wrote."""
        self._files.close(self._handle)
        self.index = index
        self._handle = handle
        self.size = size
        self.next_sequence = next_sequence

    def poison(self, error: OSError) -> None:
        with self._cond:
            self._failed = WalIOError(f"checkpoint I/O failed: {error}")
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
        try:
            if self._failed is None:
                try:
                    self._sync()
                except OSError:
                    pass
            try:
                self._files.close(self._handle)
            except OSError:
                pass
        finally:
            with self._cond:
                self._closed = True
                self._busy = False
                self._cond.notify_all()
