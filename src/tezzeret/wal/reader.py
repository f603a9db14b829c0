"""Reading segment files: naming, listing and scanning them into validated records.

Owns: the segment naming scheme (`wal-00000001.seg`) and a scan that parses records back to back
from offset 0 until the first one that fails validation, plus a search for the next valid header
after a failure (which tells a torn tail from corruption before the tail). Must never write.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

from tezzeret.wal.format import (
    MAGIC,
    Record,
    RecordInvalid,
    SegmentData,
    parse_header,
    parse_record,
    scan_records,
)

SEGMENT_RE = re.compile(r"^wal-(\d{8})\.seg$")
TMP_SUFFIX = ".tmp"


def segment_name(index: int) -> str:
    return f"wal-{index:08d}.seg"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        match = SEGMENT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


@dataclass
class SegmentScan:
    index: int
    path: Path
    size: int
    records: list[Record] = field(default_factory=list)
    # Where the records end: the first byte not part of a valid record. When clean, `size`, or
    # the start of the zero-filled tail of a preallocated segment.
    stop: int = 0
    error: RecordInvalid | None = None
    # Offset of the next valid header after `stop`, if there is one: then it is not a torn tail.
    resync: int | None = None

    @property
    def clean(self) -> bool:
        return self.error is None


def next_valid_header(data: SegmentData, start: int) -> int | None:
    pos = data.find(MAGIC, start)
    while pos != -1:
        try:
            parse_header(data, pos)
            return pos
        except RecordInvalid:
            pos = data.find(MAGIC, pos + 1)
    return None


def scan_bytes(index: int, path: Path, data: SegmentData, *, limit: int | None = None) -> SegmentScan:
    """Parse records from the start of `data`; stop at the first invalid one (or after `limit`)."""
    records, stop, error = scan_records(data, limit)
    scan = SegmentScan(index, path, len(data), records, stop, error)
    if error is not None:
        scan.resync = next_valid_header(data, stop + 1)
    return scan


def scan_segment(
    index: int, path: Path, *, limit: int | None = None, exclusive: bool = False
) -> SegmentScan:
    """Scan the segment file at `path`. With `exclusive` (the caller holds the directory's
    `LOCK`, so no writer can shrink the file under the scan), the file is memory-mapped instead
    of read whole first: the kernel reads ahead while records are validated, which on a cold
    cache overlaps the disk with the CPU. Without the lock a live writer's rotation could
    truncate a mapped file (SIGBUS), so it is read."""
    if not exclusive or path.stat().st_size == 0:
        return scan_bytes(index, path, path.read_bytes(), limit=limit)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        # Records hold copies (slices of a mapping are bytes), so the mapping can go.
        return scan_bytes(index, path, mapped, limit=limit)
    finally:
        mapped.close()


def headers_in(data: bytes, start: int = 0) -> list[tuple[int, Record | None, bytes, int]]:
    """Every (offset, record-or-None, txn_id, entry_type) whose header validates in `data[start:]`
    (offsets are the segment's, so `data` is the whole segment).

    Used on quarantined bytes to say which transactions were lost; payloads may be damaged."""
    out = []
    pos = data.find(MAGIC, start)
    while pos != -1:
        try:
            header = parse_header(data, pos)
        except RecordInvalid:
            pos = data.find(MAGIC, pos + 1)
            continue
        try:
            record: Record | None = parse_record(data, pos)
        except RecordInvalid:
            record = None
        out.append((pos, record, header.txn_id, header.entry_type))
        pos = data.find(MAGIC, pos + 1)
    return out
