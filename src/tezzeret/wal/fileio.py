"""The file operations the WAL writer performs, behind one small interface.

Owns: opening segment files for append (with `O_DSYNC` where asked and available), writing,
syncing, renaming, unlinking and directory fsync. The default `OsFileLayer` is plain `os`; tests
swap in `faults.FaultyFileLayer` to lose unsynced writes and fail later I/O. Must never buffer or
reorder writes: a write returns only when the kernel has all of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class FileLayer(Protocol):
    def open_append(self, path: Path, *, dsync: bool, create: bool) -> int: ...

    def dsync_active(self, handle: int) -> bool: ...

    def write(self, handle: int, data: bytes) -> None: ...

    def sync(self, handle: int) -> None: ...

    def close(self, handle: int) -> None: ...

    def size(self, handle: int) -> int: ...

    def rename(self, src: Path, dst: Path) -> None: ...

    def unlink(self, path: Path) -> None: ...

    def fsync_dir(self, path: Path) -> None: ...


HAVE_O_DSYNC = hasattr(os, "O_DSYNC")


class OsFileLayer:
    """Direct `os` calls; what production uses."""

    def open_append(self, path: Path, *, dsync: bool, create: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        if dsync and HAVE_O_DSYNC:
            flags |= os.O_DSYNC
        return os.open(path, flags, 0o644)

    def dsync_active(self, handle: int) -> bool:
        if not HAVE_O_DSYNC:
            return False
        import fcntl

        return bool(fcntl.fcntl(handle, fcntl.F_GETFL) & os.O_DSYNC)

    def write(self, handle: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(handle, view)
            view = view[n:]

    def sync(self, handle: int) -> None:
        # fdatasync is enough: the file size change it carries is data-relevant metadata.
        if hasattr(os, "fdatasync"):
            os.fdatasync(handle)
        else:
            os.fsync(handle)

    def close(self, handle: int) -> None:
        os.close(handle)

    def size(self, handle: int) -> int:
        return os.fstat(handle).st_size

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
