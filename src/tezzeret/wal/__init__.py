"""Stage: wal, the write-ahead log (ARCHITECTURE.md decision 6; upstream §1).

Owns: the record format, the writer with its durability barriers and group commit, recovery and
the ledger of what it lost, the Merkle root, checkpoints and the job journal the forge rebuilds
its queue from. It is a library
the forge uses; it must never import torch, the forge or any other later stage (crash-test
children import only this package and must start fast).
"""

from tezzeret.wal.errors import (
    WalCorruption,
    WalError,
    WalIOError,
    WalLocked,
    WalStateError,
    WalUnsafeMount,
)
from tezzeret.wal.journal import JobJournal, JournalState
from tezzeret.wal.log import (
    CRASH_POINTS,
    CommitRecord,
    Transaction,
    TxnState,
    Wal,
    WalOptions,
    WalStateMachine,
)
from tezzeret.wal.losses import Loss, QuarantinedRange
from tezzeret.wal.recovery import (
    OUTCOMES,
    CommittedTransaction,
    OpenTransaction,
    Problem,
    RecoveryReport,
)

__all__ = [
    "CRASH_POINTS",
    "CommitRecord",
    "CommittedTransaction",
    "JobJournal",
    "JournalState",
    "Loss",
    "OUTCOMES",
    "OpenTransaction",
    "Problem",
    "QuarantinedRange",
    "RecoveryReport",
    "Transaction",
    "TxnState",
    "Wal",
    "WalCorruption",
    "WalError",
    "WalIOError",
    "WalLocked",
    "WalOptions",
    "WalStateError",
    "WalStateMachine",
    "WalUnsafeMount",
]
