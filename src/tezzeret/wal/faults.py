"""A fault-injecting file layer for the crash matrix: lost unsynced writes, torn writes, EIO.

Owns: `FaultyFileLayer`, which wraps `OsFileLayer` and remembers, per open file, how far the data
written is durable (synced, or written through `O_DSYNC`) and how much of the file's zero-filled
preallocated space is. It can simulate power loss (every unsynced write is undone: bytes written
over durable zeros become zeros again, bytes past the durable file size are cut off, optionally
keeping a random prefix of the unsynced data, then `os._exit`),
a torn write (write a random prefix of the next write, then lose power), and an NVMe namespace
teardown (lose unsynced bytes, then fail every later call with `EIO`). Must never be used outside
tests and crash harnesses.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from tezzeret.wal.fileio import OsFileLayer


@dataclass
class _Tracked:
    path: Path
    durable: int  # end of the data known durable
    length: int  # end of the data written (the write position)
    dsync: bool
    size: int  # the file's size, preallocated zeros included
    synced_size: int  # how much of `size` is durable


class FaultyFileLayer(OsFileLayer):
    def __init__(self, seed: int = 0, *, keep_unsynced_prefix: bool = True) -> None:
        self._rng = random.Random(seed)
        self._files: dict[int, _Tracked] = {}
        self._dead = False
        self._keep_prefix = keep_unsynced_prefix
        self._tear_next: str | None = None  # "exit" or "teardown"
        self.exit_code = 77
        # The "device": every operation holds it, and power loss takes it for good, so no other
        # thread can complete a write (and acknowledge it) between the loss and the exit.
        self._device = threading.RLock()

    # -- arming ---------------------------------------------------------------------------
    def tear_next_write_and_exit(self) -> None:
        """The next write persists only a random prefix, then the process loses power."""
        self._tear_next = "exit"

    def teardown_on_next_write(self) -> None:
        """The next write is cut short by a namespace teardown; it and all later I/O get EIO."""
        self._tear_next = "teardown"

    def power_loss(self) -> None:
        """Lose every unsynced byte (keeping a random prefix of them) and exit at once."""
        self._device.acquire()  # never released: the process ends holding it
        self._lose_unsynced()
        os._exit(self.exit_code)

    def teardown(self) -> None:
        with self._device:
            self._lose_unsynced()
            self._dead = True

    def _lose_unsynced(self) -> None:
        for tracked in self._files.values():
            unsynced = tracked.length - tracked.durable
            keep = self._rng.randint(0, unsynced) if (unsynced and self._keep_prefix) else 0
            end = tracked.durable + keep
            # What was written over durable preallocated zeros reverts to zeros; what lay past
            # the durable size is gone.
            zeroed = min(tracked.length, tracked.synced_size) - end
            if zeroed > 0:
                fd = os.open(tracked.path, os.O_WRONLY)
                try:
                    os.pwrite(fd, bytes(zeroed), end)
                finally:
                    os.close(fd)
            size = max(tracked.synced_size, end)
            os.truncate(tracked.path, size)
            tracked.length = tracked.durable = end
            tracked.size = tracked.synced_size = size

    def _check(self) -> None:
        if self._dead:
            raise OSError(errno.EIO, "injected EIO: NVMe namespace torn down")

    # -- FileLayer ------------------------------------------------------------------------
    def open_at(self, path: Path, *, dsync: bool, create: bool, offset: int | None = None) -> int:
        with self._device:
            self._check()
            handle = super().open_at(path, dsync=dsync, create=create, offset=offset)
            size = os.fstat(handle).st_size
            at = size if offset is None else offset
            self._files[handle] = _Tracked(Path(path), at, at, dsync and self.dsync_active(handle), size, size)
            return handle

    def write(self, handle: int, data: bytes) -> None:
        with self._device:
            self._write(handle, data)

    def _write(self, handle: int, data: bytes) -> None:
        self._check()
        tracked = self._files[handle]
        mode, self._tear_next = self._tear_next, None
        if mode is not None and data:
            cut = self._rng.randint(0, len(data) - 1)
            super().write(handle, data[:cut])
            tracked.length += cut
            tracked.size = max(tracked.size, tracked.length)
            if mode == "exit":
                self.power_loss()
            self.teardown()
            self._check()
        super().write(handle, data)
        tracked.length += len(data)
        tracked.size = max(tracked.size, tracked.length)
        if tracked.dsync:
            tracked.durable = tracked.length
            tracked.synced_size = tracked.size

    def preallocate(self, handle: int, start: int, length: int) -> None:
        with self._device:
            self._check()
            tracked = self._files[handle]
            # The zeros go down unsynced first: a power loss in between loses them.
            OsFileLayer.write_zeros(handle, start, length)
            tracked.size = max(tracked.size, start + length)
        self.sync(handle)

    def truncate(self, handle: int, size: int) -> None:
        with self._device:
            self._check()
            super().truncate(handle, size)
            tracked = self._files[handle]
            # Until the next sync a power loss may bring the cut bytes back (as they were: zeros).
            tracked.size = size
            tracked.length = min(tracked.length, size)
            tracked.durable = min(tracked.durable, size)

    def sync(self, handle: int) -> None:
        with self._device:
            self._check()
            super().sync(handle)
            tracked = self._files[handle]
            tracked.durable = tracked.length
            tracked.synced_size = tracked.size

    def close(self, handle: int) -> None:
        with self._device:
            tracked = self._files.pop(handle, None)
            super().close(handle)
            if tracked is not None and (tracked.durable < tracked.length or tracked.synced_size < tracked.size):
                # Closing does not make data durable; keep tracking the path for power loss.
                self._files[-handle - 1] = tracked
            self._check()

    def size(self, handle: int) -> int:
        with self._device:
            self._check()
            return super().size(handle)

    def rename(self, src: Path, dst: Path) -> None:
        with self._device:
            self._check()
            super().rename(src, dst)
            for tracked in self._files.values():
                if tracked.path == Path(src):
                    tracked.path = Path(dst)

    def unlink(self, path: Path) -> None:
        with self._device:
            self._check()
            super().unlink(path)
            self._files = {h: t for h, t in self._files.items() if t.path != Path(path)}

    def fsync_dir(self, path: Path) -> None:
        with self._device:
            self._check()
            super().fsync_dir(path)
