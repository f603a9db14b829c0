"""Recovery: turn whatever is on disk after a crash into a consistent log and a report.

Owns: choosing the base (the newest segment that starts with a committed checkpoint), validating
every record after it (header magic/version/endian/CRC-32C, payload SHA-256), telling a torn tail
(a write cut short: truncated) from damage (bytes that fail validation with valid records after
them, a missing segment, or a complete record at the tail that may have been a COMMIT: moved to
`quarantine/`), grouping records into transactions and checking each COMMIT's Merkle root, and
naming what damage cost: committed transactions whose COMMIT lay in damaged bytes (lost), those
open at the damage whose end cannot be read (in doubt), and open ones that never committed
(rolled back). `analyze` only reads; `plan_quarantine` names the files; `repair` changes files.
Must never write records (the WAL aborts open transactions through its writer), record losses
(the WAL does, through `losses`, before `repair`) nor interpret payloads beyond the BEGIN
context's `operation`.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tezzeret.durable import fsync_path
from tezzeret.leyline import codec, pb
from tezzeret.wal.format import EntryType, Record
from tezzeret.wal.losses import QUARANTINE_DIR, QuarantinedRange
from tezzeret.wal.merkle import merkle_root, merkle_root_from_hash
from tezzeret.wal.reader import (
    TMP_SUFFIX,
    SegmentScan,
    headers_in,
    list_segments,
    scan_segment,
)

CHECKPOINT_OPERATION = "CHECKPOINT"
# What `RecoveryReport.outcome` can be, mildest first.
EMPTY = "empty"  # no segment at all: a new log
CLEAN = "clean"  # every byte validated; nothing cut, nothing moved
TRUNCATED_TAIL = "truncated_tail"  # a write cut short at the end was cut off; nothing committed lost
DAMAGE_QUARANTINED = "damage_quarantined"  # damage found: see lost/in doubt and `quarantined`
# The same, where the state was rebuilt from a checkpoint (`base_checkpoint`) and the records
# after it up to the damage.
RESTORED_FROM_CHECKPOINT = "restored_from_checkpoint"
OUTCOMES = (EMPTY, CLEAN, TRUNCATED_TAIL, DAMAGE_QUARANTINED, RESTORED_FROM_CHECKPOINT)
DAMAGE_OUTCOMES = (DAMAGE_QUARANTINED, RESTORED_FROM_CHECKPOINT)


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
    """What recovery found and did. `requeued_jobs` is filled by the job journal when it
    attaches. A log whose history cannot be rebuilt raises `WalCorruption` instead."""

    outcome: str = CLEAN  # one of OUTCOMES
    committed: int = 0
    # ABORTs recovery wrote: one for every transaction open at the crash (`open_transactions`).
    aborted: int = 0
    previously_aborted: int = 0
    truncated_bytes: int = 0
    quarantined_bytes: int = 0
    # Committed transactions destroyed by damage (their COMMIT was in damaged bytes, or its
    # Merkle root does not match): possibly acknowledged work, gone from the state.
    lost_transactions: list[str] = field(default_factory=list)
    # Open at the point of damage with their end unreadable: they may have committed. Rolled back.
    in_doubt_transactions: list[str] = field(default_factory=list)
    # Open at the crash and never committed: rolled back, as any crash does (never acknowledged).
    rolled_back: list[str] = field(default_factory=list)
    quarantined: list[QuarantinedRange] = field(default_factory=list)
    # The loss ledger entry recorded for this recovery's damage (see `Wal.unacknowledged_losses`).
    loss_id: str | None = None
    requeued_jobs: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    segments: list[str] = field(default_factory=list)
    base_checkpoint: str | None = None
    problems: list[Problem] = field(default_factory=list)
    mount_warnings: list[str] = field(default_factory=list)
    open_transactions: list[OpenTransaction] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        """True when recovery had to give something up (see `lost_transactions`,
        `in_doubt_transactions`, `quarantined`)."""
        return self.outcome in DAMAGE_OUTCOMES

    @property
    def lost_count(self) -> int:
        return len(self.lost_transactions)

    def to_dict(self) -> dict[str, Any]:
        open_txns, self.open_transactions = self.open_transactions, []
        try:
            out = asdict(self)  # without the open transactions' payloads
        finally:
            self.open_transactions = open_txns
        out["open_transactions"] = [t.txn_id for t in open_txns]
        out["problems"] = [asdict(p) | {"message": p.describe()} for p in self.problems]
        out["damaged"] = self.damaged
        out["lost_count"] = self.lost_count
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
    # (segment index, offset) from which everything is quarantined, if damage was found.
    cut: tuple[int, int] | None
    torn_tail: bool
    lost: list[str]
    in_doubt: list[str]
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
    def damaged(self) -> bool:
        """Anything beyond a write cut short: recovery will give something up or quarantine."""
        return self.cut is not None or bool(self.lost or self.in_doubt) or self.corrupt

    @property
    def history_missing(self) -> bool:
        """No base can be established: the state cannot be rebuilt from what is on disk."""
        return any(p.kind == "history_missing" for p in self.problems)

    @property
    def outcome(self) -> str:
        if not self.scans:
            return EMPTY
        if self.damaged:
            return RESTORED_FROM_CHECKPOINT if self.base_checkpoint else DAMAGE_QUARANTINED
        return TRUNCATED_TAIL if self.torn_tail else CLEAN

    @property
    def rolled_back(self) -> list[str]:
        doubt = set(self.lost) | set(self.in_doubt)
        return [t.txn_id for t in self.open if t.txn_id not in doubt]


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


def analyze(directory: Path, *, exclusive: bool = False) -> Analysis:
    """Scan and validate the WAL in `directory` without changing it. `exclusive`: the caller
    holds the directory's `LOCK` (see `reader.scan_segment`)."""
    # Recovery allocates hundreds of thousands of small objects and no cycles; the cyclic GC
    # would rescan them all again and again (it doubled recovery time in measurements).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(Path(directory), exclusive)
    finally:
        if enabled:
            gc.enable()


def _analyze(directory: Path, exclusive: bool) -> Analysis:
    segments = list_segments(directory)
    temporaries = [p for p in directory.glob("*" + TMP_SUFFIX)] if directory.is_dir() else []
    problems: list[Problem] = []
    base_pos = 0
    # Newest first: stop at the first complete checkpoint; older segments are superseded by it.
    by_newest: list[SegmentScan] = []
    for pos in range(len(segments) - 1, -1, -1):
        index, path = segments[pos]
        scan = scan_segment(index, path, exclusive=exclusive)
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
            at_tail = i == len(scans) - 1
            txn = scan.error.txn_id.hex() if scan.error.txn_id else ""
            if at_tail and scan.resync is None:
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
    in_doubt: list[str] = []
    if cut is not None:
        # What the damaged bytes still say: a readable COMMIT there is a lost commit; a
        # transaction open at the cut whose end is not readable there may have committed.
        ended_there: set[bytes] = set()
        for scan in scans:
            if scan.index < cut[0]:
                continue
            start = cut[1] if scan.index == cut[0] else 0
            for _off, _rec, tid, etype in headers_in(scan.path.read_bytes(), start):
                if etype == EntryType.COMMIT:
                    lost.append(tid.hex())
                if etype in (EntryType.COMMIT, EntryType.ABORT):
                    ended_there.add(tid)
        in_doubt = [tid.hex() for tid in txns if tid not in ended_there]
    elif torn_tail and (tail_error := scans[-1].error) is not None and not tail_error.torn:
        # (torn_tail is only set with an error on the last segment.)
        # A complete record at the tail that fails validation was not a write cut short: it may
        # be an acknowledged COMMIT damaged later. Readable as a COMMIT, it is a lost commit;
        # with its header unreadable, the transaction its id field names (if open here) is in
        # doubt. Either way the tail is quarantined, not cut off. (Any other readable record
        # there was followed by nothing: its transaction never committed.)
        last = scans[-1]
        data = last.path.read_bytes()
        headers = headers_in(data, last.stop)
        commits = [tid.hex() for _off, _rec, tid, etype in headers if etype == EntryType.COMMIT]
        named = bytes(data[last.stop + 16 : last.stop + 32])
        if (not headers or headers[0][0] != last.stop) and named in txns:
            in_doubt.append(named.hex())
        if commits or in_doubt:
            lost += commits
            cut = (last.index, last.stop)
    lost = list(dict.fromkeys(lost))
    in_doubt = [t for t in in_doubt if t not in lost]
    return Analysis(directory, scans, superseded, temporaries, base_checkpoint, committed,
                    open_txns, previously_aborted, problems, cut, torn_tail, lost, in_doubt,
                    last_sequence)


def plan_quarantine(analysis: Analysis, stamp: str) -> list[QuarantinedRange]:
    """The byte ranges `repair` will move to `quarantine/`, and the files it will move them to
    (named with `stamp`, so nothing already there is overwritten)."""
    if analysis.cut is None:
        return []
    cut_index, cut_offset = analysis.cut
    plan = []
    for scan in analysis.scans:
        if scan.index < cut_index:
            continue
        name = scan.path.name
        if scan.index == cut_index and cut_offset > 0:
            target = f"{QUARANTINE_DIR}/{name}.from-{cut_offset}.{stamp}"
            plan.append(QuarantinedRange(name, cut_offset, scan.size, target))
        else:
            plan.append(QuarantinedRange(name, 0, scan.size, f"{QUARANTINE_DIR}/{name}.{stamp}"))
    return plan


def repair(analysis: Analysis, plan: list[QuarantinedRange]) -> tuple[int, int]:
    """Apply what `analyze` found: drop temporaries and superseded segments, truncate a torn tail,
    move `plan` (from `plan_quarantine`) to quarantine. Returns (truncated_bytes,
    quarantined_bytes)."""
    directory = analysis.directory
    truncated = quarantined = 0
    for path in analysis.temporaries + analysis.superseded:
        path.unlink(missing_ok=True)
    if plan:
        qdir = directory / QUARANTINE_DIR
        qdir.mkdir(exist_ok=True)
        # Newest first: a crash half-way then leaves the damaged segment last, still damaged, so
        # the next recovery quarantines the same bytes instead of accepting the later segments.
        for part in reversed(plan):
            source = directory / part.segment
            target = directory / part.file
            if part.start > 0:
                with open(source, "rb") as f:
                    f.seek(part.start)
                    target.write_bytes(f.read(part.end - part.start))
                fsync_path(target)
                os.truncate(source, part.start)
                fsync_path(source)
            else:
                shutil.move(str(source), str(target))
            quarantined += part.size
        fsync_path(qdir)
    elif analysis.torn_tail:
        last = analysis.scans[-1]
        truncated = last.size - last.stop
        os.truncate(last.path, last.stop)
        fsync_path(last.path)
    fsync_path(directory)
    return truncated, quarantined
