"""Typed errors of the write-ahead log.

Owns: the exceptions `tezzeret.wal` raises on purpose, each with a stable `code` and a message that
says what is wrong, where (file and offset, transaction id) and what to do. Must never import
anything but `tezzeret.errors`.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class WalError(TezzeretError):
    """Base of every WAL error."""

    code = "WAL_ERROR"


class WalCorruption(WalError):
    """A record failed validation where a torn tail cannot explain it, or recovery cannot proceed."""

    code = "WAL_CORRUPTION"

    def __init__(self, message: str, *, segment: str = "", offset: int = -1, txn_id: str = "") -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.txn_id = txn_id


class WalIOError(WalError):
    """A write or a durability barrier failed; the log refuses further writes (the page cache can no
    longer be trusted after a failed sync), so the process must restart and recover."""

    code = "WAL_IO_ERROR"


class WalUnsafeMount(WalError):
    """The WAL directory's filesystem is mounted with options that weaken durability and
    `wal.recovery_validation` is `strict`."""

    code = "WAL_UNSAFE_MOUNT"


class WalStateError(WalError):
    """An operation was called in the wrong state (e.g. `data()` after `commit()`)."""

    code = "WAL_STATE"


class WalLocked(WalError):
    """Another process holds the WAL directory open for writing."""

    code = "WAL_LOCKED"
