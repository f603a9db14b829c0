"""Recovery: turn whatever is on disk after a crash into a consistent log and a report.

Owns: choosing the base (the newest segment that starts with a committed checkpoint), validating
every record after it (header magic/version/endian/CRC-32C, payload SHA-256), telling a torn tail
(truncated) from corruption before the tail (the damaged rest is moved to `quarantine/` and the
state is restored from the checkpoint plus the valid records before the damage, naming the
transactions lost), checking each COMMIT's Merkle root, and listing open transactions.
`analyze` only reads; `repair` changes files. Must never write records (the WAL aborts open
transactions through its writer) nor interpret payloads beyond the BEGIN context's `operation`.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from tezzeret.durable import fsync_path
from tezzeret.leyline import codec, pb
from tezzeret.wal.format import EntryType, Record
from tezzeret.wal.merkle import merkle_root, merkle_root_from_hash
from tezzeret.wal.reader import (
    TMP_SUFFIX,
    SegmentScan,
    headers_in,
    list_segments,
    scan_segment,
)

CHECKPOINT_OPERATION = "CHECKPOINT"
QUARANTINE_DIR = "quarantine"


class CommittedTransaction(NamedTuple):
    """A committed transaction as recovery (or a live commit) hands it to the state machine. A
    tuple: recovery builds one per transaction, and a tuple is the cheapest object to build."""

    txn_id: str
    context_bytes: bytes
    payloads: list[bytes]
    merkle_root: str
    epoch: int = 0
    segment: str = ""
    offset: int = 0
    # True for the checkpoint transaction a base segment starts with.
    is_checkpoint: bool = False

    @property
    def context(self) -> pb.ExecutionContext:
        return codec.decode(pb.ExecutionContext, self.context_bytes, canonical=False)


@dataclass
class OpenTransaction:
    """A transaction that began but neither committed nor aborted before the crash."""

    txn_id: str
    context_bytes: bytes
    payloads: list[bytes]
    epoch: int = 0

    @property
    def context(self) -> pb.ExecutionContext:
        return codec.decode(pb.ExecutionContext, self.context_bytes, canonical=False)


@dataclass
class Problem:
    # torn_tail | corrupt | merkle_mismatch | orphan | duplicate | missing_segment | history_missing
    kind: str
    segment: str
    offset: int
    txn_id: str
    reason: str

    def describe(self) -> str:
        txn = f" transaction {self.txn_id}" if self.txn_id else ""
        return f"{self.kind} in {self.segment} at offset {self.offset}{txn}: {self.reason}"


@dataclass
class RecoveryReport:
    """What recovery found and did. `requeued_jobs` is filled by the job journal when it attaches."""

    # clean | empty | truncated_tail | restored_from_checkpoint (an unrecoverable log raises
    # WalCorruption instead of returning a report)
    outcome: str = "clean"
    committed: int = 0
    aborted: int = 0
    previously_aborted: int = 0
    truncated_bytes: int = 0
    quarantined_bytes: int = 0
    lost_transactions: list[str] = field(default_factory=list)
    requeued_jobs: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    segments: list[str] = field(default_factory=list)
    base_checkpoint: str | None = None
    problems: list[Problem] = field(default_factory=list)
    mount_warnings: list[str] = field(default_factory=list)
    open_transactions: list[OpenTransaction] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["open_transactions"] = [t.txn_id for t in self.open_transactions]
        out["problems"] = [asdict(p) | {"message": p.describe()} for p in self.problems]
        return out


@dataclass
class Analysis:
    """The read-only result of scanning a WAL directory."""

    directory: Path
    scans: list[SegmentScan]
    superseded: list[Path]
    temporaries: list[Path]
    base_checkpoint: str | None
    committed: list[CommittedTransaction]
    open: list[OpenTransaction]
    previously_aborted: int
    problems: list[Problem]
    # (segment index, offset) from which everything is quarantined, if corruption was found.
    cut: tuple[int, int] | None
    torn_tail: bool
    lost: list[str]
    last_sequence: int

    def end_of(self, index: int) -> int:
        """Where the records of segment `index` end once `repair` has run: the scan's stop (a
        clean end, a zero-filled tail, a truncated torn tail or a quarantine cut)."""
        for scan in self.scans:
            if scan.index == index:
                return scan.stop
        raise KeyError(f"segment {index} was not scanned")

    @property
    def corrupt(self) -> bool:
        return any(p.kind != "torn_tail" for p in self.problems)

    @property
    def history_missing(self) -> bool:
        """No base can be established: the state cannot be rebuilt from what is on disk."""
        return any(p.kind == "history_missing" for p in self.problems)


def _is_checkpoint_begin(record: Record) -> bool:
    if record.entry_type != EntryType.BEGIN:
        return False
    try:
        ctx = codec.decode(pb.ExecutionContext, record.payload, canonical=False)
    except codec.ContractError:
        return False
    return ctx.operation == CHECKPOINT_OPERATION


def _checkpoint_complete(scan: SegmentScan) -> bool:
    """True when the segment opens with a checkpoint transaction whose COMMIT is present and valid."""
    if not scan.records or not _is_checkpoint_begin(scan.records[0]):
        return False
    first = scan.records[0]
    hashes = []
    for record in scan.records[1:]:
        if record.txn_id != first.txn_id:
            return False
        if record.entry_type == EntryType.DATA:
            hashes.append(record.payload_sha256)
        elif record.entry_type == EntryType.COMMIT:
            return record.payload == merkle_root(first.payload, hashes).encode()
        else:
            return False
    return False


def _group(
    records: list[Record], name: str, checkpoint_tid: bytes | None,
    txns: dict[bytes, list[Record]], ended: set[bytes], committed: list[CommittedTransaction],
    lost: list[str], problems: list[Problem],
) -> int:
    """Group `records` into transactions: `txns` maps each open one's id to its BEGIN and DATA
    records, `ended` holds the ids of those that committed or aborted; returns how many ABORTs
    it met. Recovery time is this loop and the scan, so it works on the records' fields by
    position (0 offset, 1 txn_id, 3 epoch, 5 entry_type, 7 payload_sha256, 8 payload) and
    builds one object per transaction."""
    new = tuple.__new__  # skips the NamedTuple's Python-level __new__
    sha = hashlib.sha256
    append_committed = committed.append
    aborted = 0
    for record in records:
        etype = record[5]
        tid = record[1]
        if etype == 1:  # BEGIN
            if tid in txns or tid in ended:
                problems.append(Problem("duplicate", name, record[0], tid.hex(),
                                        "a second BEGIN for one transaction"))
            else:
                txns[tid] = [record]
            continue
        if etype == 2:  # DATA
            acc = txns.get(tid)
            if acc is not None:
                acc.append(record)
                continue
        else:  # COMMIT or ABORT
            acc = txns.pop(tid, None)
            if acc is not None:
                ended.add(tid)
                if etype == 4:
                    aborted += 1
                    continue
                begin = acc[0]
                if len(acc) == 2:  # the common transaction: one DATA (merkle's shortcut, inline)
                    only = acc[1]
                    root = sha(only[7] + begin[7]).hexdigest()
                    payloads = [only[8]]
                else:
                    data = acc[1:]
                    root = merkle_root_from_hash(begin[7], [d[7] for d in data])
                    payloads = [d[8] for d in data]
                if record[8] == root.encode():
                    append_committed(new(CommittedTransaction, (
                        tid.hex(), begin[8], payloads, root, begin[3], name, record[0],
                        tid == checkpoint_tid,
                    )))
                else:
                    lost.append(tid.hex())
                    problems.append(Problem("merkle_mismatch", name, record[0], tid.hex(),
                                            "COMMIT's Merkle root does not match its BEGIN and DATA"))
                continue
        problems.append(Problem(
            "orphan", name, record[0], tid.hex(),
            f"{EntryType(etype).name} record with no open transaction (BEGIN missing or "
            "already ended)",
        ))
    return aborted


def analyze(directory: Path) -> Analysis:
    """Scan and validate the WAL in `directory` without changing it."""
    # Recovery allocates hundreds of thousands of small objects and no cycles; the cyclic GC
    # would rescan them all again and again (it doubled recovery time in measurements).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(Path(directory))
    finally:
        if enabled:
            gc.enable()


def _analyze(directory: Path) -> Analysis:
    directory = Path(directory)
    segments = list_segments(directory)
    temporaries = [p for p in directory.glob("*" + TMP_SUFFIX)] if directory.is_dir() else []
    problems: list[Problem] = []
    scans: list[SegmentScan] = []
    base_pos = 0
    # Newest first: stop at the first complete checkpoint; older segments are superseded by it.
    by_newest: list[SegmentScan] = []
    for pos in range(len(segments) - 1, -1, -1):
        index, path = segments[pos]
        scan = scan_segment(index, path)
        by_newest.append(scan)
        if _checkpoint_complete(scan):
            base_pos = pos
            break
    scans = list(reversed(by_newest))
    superseded = [path for _, path in segments[:base_pos]]
    base_checkpoint = None
    if scans and _checkpoint_complete(scans[0]):
        base_checkpoint = scans[0].path.name
    elif scans and scans[0].index != 1:
        problems.append(Problem(
            "history_missing", scans[0].path.name, 0, "",
            "the oldest segment is not 1 and does not start with a complete checkpoint: "
            "history before it is missing or its checkpoint is damaged",
        ))

    cut: tuple[int, int] | None = None
    torn_tail = False
    for i, scan in enumerate(scans):
        if i > 0 and scan.index != scans[i - 1].index + 1:
            problems.append(Problem(
                "missing_segment", scan.path.name, 0, "",
                f"segment {scans[i - 1].index + 1} is missing between "
                f"{scans[i - 1].path.name} and {scan.path.name}",
            ))
            cut = (scan.index, 0)
            break
        if scan.error is not None:
            last = i == len(scans) - 1
            txn = scan.error.txn_id.hex() if scan.error.txn_id else ""
            if last and scan.resync is None:
                torn_tail = True
                problems.append(Problem("torn_tail", scan.path.name, scan.stop, txn,
                                        scan.error.reason))
            else:
                problems.append(Problem("corrupt", scan.path.name, scan.stop, txn,
                                        scan.error.reason))
                cut = (scan.index, scan.stop)
            break
    if cut is not None:
        kept = [s for s in scans if s.index < cut[0] or (s.index == cut[0] and cut[1] > 0)]
    else:
        kept = scans

    txns: dict[bytes, list[Record]] = {}
    ended: set[bytes] = set()
    committed: list[CommittedTransaction] = []
    lost: list[str] = []
    previously_aborted = 0
    last_sequence = 0
    checkpoint_tid = scans[0].records[0].txn_id if base_checkpoint else None
    for scan in kept:
        previously_aborted += _group(scan.records, scan.path.name, checkpoint_tid, txns, ended,
                                     committed, lost, problems)
        if scan.records and scan.records[-1].sequence > last_sequence:
            last_sequence = scan.records[-1].sequence
    open_txns = [
        OpenTransaction(tid.hex(), acc[0].payload, [d.payload for d in acc[1:]], acc[0].epoch)
        for tid, acc in txns.items()
    ]
    # Name what the damage cost: transactions whose COMMIT lies in the quarantined or torn bytes.
    for scan in scans:
        if cut is not None and scan.index >= cut[0]:
            start = cut[1] if scan.index == cut[0] else 0
        elif torn_tail and scan is scans[-1] and not (scan.error and scan.error.torn):
            # A complete record that fails its checksum may be an acknowledged COMMIT that was
            # damaged later; one that is merely cut short was never acknowledged (its write
            # had not finished), so it is rolled back, not lost.
            start = scan.stop
        else:
            continue
        for _off, _rec, tid, etype in headers_in(scan.path.read_bytes(), start):
            if etype == EntryType.COMMIT and tid.hex() not in lost:
                lost.append(tid.hex())
    return Analysis(directory, scans, superseded, temporaries, base_checkpoint, committed,
                    open_txns, previously_aborted, problems, cut, torn_tail, lost, last_sequence)


def repair(analysis: Analysis) -> tuple[int, int]:
    """Apply what `analyze` found: drop temporaries and superseded segments, truncate a torn tail,
    quarantine damaged bytes. Returns (truncated_bytes, quarantined_bytes)."""
    directory = analysis.directory
    truncated = quarantined = 0
    for path in analysis.temporaries + analysis.superseded:
        path.unlink(missing_ok=True)
    if analysis.cut is not None:
        qdir = directory / QUARANTINE_DIR
        qdir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
        cut_index, cut_offset = analysis.cut
        # Newest first: a crash half-way then leaves the damaged segment last, still damaged, so
        # the next recovery quarantines the same bytes instead of accepting the later segments.
        for scan in reversed(analysis.scans):
            if scan.index < cut_index:
                continue
            if scan.index == cut_index and cut_offset > 0:
                data = scan.path.read_bytes()
                target = qdir / f"{scan.path.name}.from-{cut_offset}.{stamp}"
                target.write_bytes(data[cut_offset:])
                fsync_path(target)
                os.truncate(scan.path, cut_offset)
                fsync_path(scan.path)
                quarantined += len(data) - cut_offset
            else:
                quarantined += scan.path.stat().st_size
                shutil.move(str(scan.path), str(qdir / f"{scan.path.name}.{stamp}"))
        fsync_path(qdir)
    elif analysis.torn_tail:
        last = analysis.scans[-1]
        truncated = last.size - last.stop
        os.truncate(last.path, last.stop)
        fsync_path(last.path)
    fsync_path(directory)
    return truncated, quarantined
