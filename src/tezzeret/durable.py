"""Durable writes on a local filesystem: the one place that knows how a file or a rename survives
a crash.

Owns `fsync_dir` (a create, rename or unlink inside a directory is durable only once the directory
is synced), `fsync_path` and `atomic_write` (temporary file in the same directory, fsync, rename,
directory fsync: a reader sees the old file or the whole new one, never a mix). Every stage that
must not lose a file (the WAL, the store's blobs and keys, the artifact writer) goes through
these. Must never import anything of Tezzeret's: it sits below every stage.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a create, rename or unlink inside directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, chunks: Iterable[bytes], *, mode: int = 0o644) -> None:
    """Write `chunks` to `path` atomically and durably (tmp + fsync + rename + directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
