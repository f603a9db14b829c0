"""The segment writer: sequence numbers, offsets, rotation, barriers and group commit.

Owns: the one open segment file. Callers hand it lists of records to append; one leader at a
time takes everything queued and writes it in a round: one `write` (durable on return under
`O_DSYNC`, else followed by one `fdatasync`). A queued item is one or two phases: `records`, then
(for a commit) `then`, which may reach the file only after `records` is durable. So a commit
spans two rounds: its BEGIN/DATA go out in one, its COMMIT leads the next, beside the BEGIN/DATA
of the commits queued meanwhile. Each barrier thus serves two cohorts of committers, and no
COMMIT reaches the file before its data is durable nor returns before it is durable itself.
Records go into space zero-filled and synced ahead of them (`_preallocate`, see `fileio`), so a
durable write overwrites blocks that exist instead of growing the file.

Who leads: a thread that finds nobody leading leads until its own item is written (a lone
committer never waits on another thread); after that, and for coroutines (the loop must not
block), the writer's own thread leads for as long as work is queued. Handing the role from
committer to committer instead cost a thread wake-up per round, and on two cores wake-ups and GIL
hand-offs, not the disk, bound eight committing threads (measured; see the WAL README).

After a failed write or sync the writer is poisoned: the page cache can no longer be trusted, so
the process must restart and recover. Must never decide what records mean; the `on_written`
callback (run under the writer lock, in log order) does that.
"""

from __future__ import annotations

import asyncio
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
from tezzeret.wal.format import HEADER_SIZE, EntryType, pack_records
from tezzeret.wal.reader import segment_name

CrashHook = Callable[[str], None]
# Zero-filled space made ahead of the log at a time: as much again as the segment has, from
# 256 KiB to 4 MiB. A fresh segment (after a checkpoint, say) costs its next commit 0.4 ms, not
# the 3-4 ms of a 4 MiB write + sync (measured on the development VM); a long-lived one pays
# that once every few thousand small transactions.
PREALLOCATE_MIN = 256 << 10
PREALLOCATE_MAX = 4 << 20
_FSYNC_MS = metrics.WAL_FSYNC_DURATION_MS
# Runs in the leader after the first phase is durable and before the second is written.
Barrier = Callable[[], None]


@dataclass(slots=True, eq=False)
class _Item:
    """One caller's queued append. A thread caller's `wake` is a lock held from creation;
    releasing it wakes exactly that caller, once its records are written (`written`) or the
    writer has failed. An asyncio caller's `wake` is a future, resolved from the leader's
    thread."""

    records: list[PendingRecord]
    durable: bool
    then: list[PendingRecord] | None
    between: Barrier | None
    wake: Any
    written: bool = False
    loop: asyncio.AbstractEventLoop | None = None


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():  # a cancelled awaiter's record is written all the same
            fut.set_result(None)


@dataclass(slots=True)
class PendingRecord:
    txn_id: bytes
    entry_type: EntryType
    payload: bytes
    sha256: bytes
    epoch: int
    owner: Any = None  # the Transaction, for the on_written callback


def _wake_all(items: list[_Item]) -> None:
    """Wake every caller in `items`: thread callers one by one, each event loop once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in items:
        if item.loop is None:
            item.wake.release()
        else:
            by_loop.setdefault(item.loop, []).append(item.wake)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            pass


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
        allocated: int,
        next_sequence: int,
        group_window_s: float,
        in_flight: Callable[[], int] = lambda: 0,
        on_written: Callable[[list[PendingRecord]], None],
        crash_hook: CrashHook | None,
    ) -> None:
        self.directory = directory
        self._files = files
        self._dsync = dsync and files.dsync_active(handle)
        self._max = max_segment_bytes
        self.index = index
        self._handle = handle
        self.size = size  # where the next record goes: the end of the log's records
        self._allocated = allocated  # the file's size: zeros from `size` on
        self.next_sequence = next_sequence
        self._window = group_window_s
        self._in_flight = in_flight
        self._gathering = False
        # Size of the last round: how much company the next leader can expect.
        self._recent = 1
        self._on_written = on_written
        self._hook = crash_hook
        self._mutex = threading.Lock()
        # Only `exclusive` and `close` wait on this; appenders wait on their own item's lock.
        self._cond = threading.Condition(self._mutex)
        self._queue: list[_Item] = []
        # Commits whose first phase is durable: their COMMITs lead the next round's write.
        self._carry: list[_Item] = []
        # True while someone leads (or holds `exclusive`); the queue then waits for a hand-off.
        self._busy = False
        # Callers of `exclusive`/`close` waiting: leaders then finish the commits under way and
        # drop the role, or a steady stream of commits would keep a checkpoint waiting forever.
        self._waiting_exclusive = 0
        self._failed: WalIOError | None = None
        self._closed = False
        self.syncs = 0
        # The writer's own thread; started the first time it is handed the role. Released once
        # per hand-off; a plain lock suffices as only one role exists to hand over, and it costs
        # less per turn than a Semaphore (a Condition in Python).
        self._lead_thread: threading.Thread | None = None
        self._lead_wanted = threading.Lock()
        self._lead_wanted.acquire()

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

    def append(
        self,
        records: list[PendingRecord],
        *,
        durable: bool,
        then: list[PendingRecord] | None = None,
        between: Barrier | None = None,
    ) -> None:
        """Write `records` (may be empty: a pure barrier); return once written, and durable if
        `durable`. With `then`: make `records` durable, run `between`, then write `then` and
        return once it is durable too (a commit: BEGIN/DATA, barrier, COMMIT, barrier). Blocks
        the calling thread; coroutines use `append_async`."""
        wake = threading.Lock()
        wake.acquire()
        item = _Item(records, durable or then is not None, then, between, wake)
        with self._mutex:
            leading = self._enqueue(item)
        if not leading or self._lead(item):
            wake.acquire()  # released by the leader once written, or to raise
        if not item.written:
            self._check()
            raise WalStateError(f"the WAL in {self.directory} stopped before this write")

    async def append_async(
        self,
        records: list[PendingRecord],
        *,
        durable: bool,
        then: list[PendingRecord] | None = None,
        between: Barrier | None = None,
    ) -> None:
        """`append` for a coroutine: queue the records and await their round without a thread
        per call. The loop only queues and is woken once per round; the writer's thread (or a
        thread caller leading meanwhile) does the writing. Queued work is written even if the
        awaiting task is cancelled."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        item = _Item(records, durable or then is not None, then, between, fut, loop=loop)
        with self._mutex:
            if self._enqueue(item):
                self._wake_lead_thread()
        await fut
        if not item.written:
            self._check()
            raise WalStateError(f"the WAL in {self.directory} stopped before this write")

    def _enqueue(self, item: _Item) -> bool:
        """With the mutex held: queue `item`; True when nobody leads, so its caller's side must.
        Never while a checkpoint (or close) waits for the role: a caller arriving just as a
        leader let go would take it first, again and again, and starve the checkpoint."""
        self._check()
        self._queue.append(item)
        leading = not self._busy and not self._waiting_exclusive
        if leading:
            self._busy = True
        if self._gathering:
            self._cond.notify_all()
        return leading

    def _wake_lead_thread(self) -> None:
        """With the mutex held: have the writer's own thread lead from here on."""
        if self._lead_thread is None:
            self._lead_thread = threading.Thread(
                target=self._lead_loop, name=f"wal-writer:{self.directory.name}", daemon=True
            )
            self._lead_thread.start()
        self._lead_wanted.release()

    def _lead_loop(self) -> None:
        while True:
            self._lead_wanted.acquire()
            with self._mutex:
                if self._closed and not self._queue:
                    return
            try:
                self._lead(None)
            except BaseException:  # noqa: BLE001 - the failure is in `_failed`; callers raise it
                pass

    def _lead(self, own: _Item | None) -> bool:
        """Write rounds: a thread caller that found nobody leading until its own item is written
        (so a lone committer never waits on another thread), the writer's thread while any work
        is left. Then hand the role to the writer's thread, or give it up. True when `own` is
        still queued (a checkpoint got the role first): its caller waits for a later leader."""
        while True:
            try:
                self._round()
            except BaseException:
                with self._mutex:  # the writer is poisoned now: drop the role for good
                    self._hand_off()
                raise
            with self._mutex:
                stop = self._failed is not None or self._closed
                more = bool(self._carry) or bool(self._queue and not self._waiting_exclusive)
                if not stop and more and (own is None or not own.written):
                    continue
                if own is not None and more and not stop:
                    self._wake_lead_thread()  # the role moves on; `busy` stays set
                else:
                    self._hand_off()
                return own is not None and any(item is own for item in self._queue)

    def _round(self) -> None:
        """One write: the COMMITs of the items whose first phase the last round made durable,
        then the first phase of everything queued since. A commit spans two rounds, so each
        barrier serves two cohorts of committers: about one barrier per cohort instead of two,
        with the same order on disk (no COMMIT is written before its data is durable, and none
        returns before its own record is)."""
        with self._cond:
            if self._window > 0 and not self._waiting_exclusive:
                # Commit delay (PostgreSQL's commit_delay/commit_siblings): while more callers
                # are expected than have queued, wait up to the window so they share this
                # round's barrier. Expected: the open transactions, or as many as the last round
                # held (the committers it woke are still starting their next transaction). A
                # lone writer never waits.
                deadline = time.monotonic() + self._window
                self._gathering = True
                while max(self._in_flight(), self._recent) > len(self._queue) + len(self._carry):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._gathering = False
            carry, self._carry = self._carry, []
            fresh: list[_Item] = []
            # A checkpoint (or close) waiting: take what is queued once more, but only while no
            # commit is half-way, so the role comes free within two rounds however busy the log.
            if not (self._waiting_exclusive and carry):
                fresh, self._queue = self._queue, []
            self._recent = len(carry) + len(fresh)
        error: BaseException | None = None
        try:
            written = self._write_round(carry, fresh)
        except BaseException as exc:  # noqa: BLE001 - whatever it was, the round's fate is unknown
            error = exc
        done: list[_Item] = []
        with self._mutex:
            if error is None:
                for item in carry:
                    item.written = True
                done += carry
                for item in fresh:
                    if item.then:
                        self._carry.append(item)
                    else:
                        item.written = True
                        done.append(item)
                try:
                    self._on_written(written)
                except BaseException as exc:  # noqa: BLE001 - durable, but the state machine missed it
                    error = exc
            if error is not None:
                self._failed = WalIOError(f"write, sync or hand-off failed: {error}")
                # Nobody may write after a failure: wake everyone to raise.
                done = carry + fresh + self._queue
                self._carry, self._queue = [], []
        _wake_all(done)
        if error is not None and not isinstance(error, OSError):
            raise error

    def _hand_off(self) -> None:
        """With the mutex held, as leader or `exclusive` holder: pass the role on or drop it."""
        if self._failed is not None or self._closed:
            _wake_all(self._queue)  # they raise
            self._queue = []
        elif self._queue and not self._waiting_exclusive:
            self._wake_lead_thread()
            return
        # Anyone still queued is led by the `exclusive` holder's hand-off, or by the next caller.
        self._busy = False
        self._cond.notify_all()

    def _write_round(self, carry: list[_Item], fresh: list[_Item]) -> list[PendingRecord]:
        records = [r for item in carry for r in item.then or ()]
        records += [r for item in fresh for r in item.records]
        total = sum(HEADER_SIZE + len(r.payload) for r in records)
        if total and self.size > 0 and self.size + total > self._max:
            self._rotate()
        if self.size + total > self._allocated:
            self._preallocate(self.size + total)
        for item in carry:
            if item.between is not None:
                item.between()
        if records:
            data = pack_records(records, sequence=self.next_sequence, offset=self.size,
                                timestamp_ns=time.time_ns())
            start = time.perf_counter()
            self._files.write(self._handle, data)
            if self._dsync:
                # Under O_DSYNC the write is the barrier: it returns once the data is durable.
                self.syncs += 1
                _FSYNC_MS.observe((time.perf_counter() - start) * 1000)
            self.size += total
            self.next_sequence += len(records)
        if self._hook is not None and any(r.entry_type == EntryType.COMMIT for r in records):
            self._hook("after_commit_before_sync")
        if not self._dsync and (carry or any(item.durable for item in fresh)):
            self._sync()
        return records

    def _preallocate(self, needed: int) -> None:
        """Zero-fill and sync the segment ahead of the writes (see `fileio`), a growing chunk at a
        time, never past the segment limit unless one round alone needs more."""
        step = min(PREALLOCATE_MAX, max(PREALLOCATE_MIN, self._allocated))
        end = max(needed, min(self._max, self._allocated + step))
        self._files.preallocate(self._handle, self._allocated, end - self._allocated)
        self._allocated = end

    def _sync(self) -> None:
        start = time.perf_counter()
        self._files.sync(self._handle)
        self.syncs += 1
        _FSYNC_MS.observe((time.perf_counter() - start) * 1000)

    def _rotate(self) -> None:
        # The old segment keeps its records, not the zeros preallocated after them, and all of
        # it becomes durable before the new one exists, so recovery never sees a later segment
        # while an earlier one still has unsynced bytes.
        self._files.truncate(self._handle, self.size)
        self._sync()
        self._files.close(self._handle)
        self.index += 1
        path = self.directory / segment_name(self.index)
        self._handle = self._files.open_at(path, dsync=self._dsync, create=True)
        self._files.fsync_dir(self.directory)
        self.size = self._allocated = 0

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the leader role (no writes by anyone else) for a checkpoint."""
        with self._cond:
            self._check()
            self._waiting_exclusive += 1
            try:
                while self._busy:
                    self._cond.wait()
                    self._check()
            finally:
                self._waiting_exclusive -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._mutex:
                self._hand_off()

    def switch_segment(self, index: int, handle: int, size: int, next_sequence: int) -> None:
        """Inside `exclusive`: continue in a segment the checkpoint wrote."""
        self._files.close(self._handle)
        self.index = index
        self._handle = handle
        self.size = self._allocated = size
        self.next_sequence = next_sequence

    def poison(self, error: OSError) -> None:
        with self._cond:
            self._failed = WalIOError(f"checkpoint I/O failed: {error}")
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._waiting_exclusive += 1
            while self._busy:
                self._cond.wait()
            self._waiting_exclusive -= 1
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
            with self._mutex:
                self._closed = True
                self._hand_off()
            if self._lead_thread is not None:
                self._lead_wanted.release()  # it finds the writer closed and returns
                self._lead_thread.join(timeout=5)
