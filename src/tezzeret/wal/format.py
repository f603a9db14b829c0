"""The on-disk record format: a 256-byte little-endian header followed by the payload.

Owns: packing and validating records (`<8sII16sQQQIQ32sQI144s`: magic, version, endian marker,
transaction id, sequence, epoch, timestamp_ns, entry type, payload size, payload SHA-256, next
offset, header CRC-32C, reserved). The CRC is CRC-32C (Castagnoli, via `google_crc32c`, hardware
accelerated) over the 256 header bytes with the CRC field zeroed; the payload is covered by its
SHA-256. `scan_records` is the loop recovery time is made of, `pack_records` the one the writer
runs between two writes; both keep Python's work per record to a few C calls. Must never do I/O
or decide what a bad record means for recovery (that is `recovery`).
"""

from __future__ import annotations

import enum
import hashlib
import mmap
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import google_crc32c

MAGIC = b"ESPERWAL"
VERSION = 2
ENDIAN_MARKER = 0x12345678
HEADER = struct.Struct("<8sII16sQQQIQ32sQI144s")
HEADER_SIZE = HEADER.size
assert HEADER_SIZE == 256
# Byte offset of the CRC field: everything before it, in the order of the format string.
CRC_OFFSET = struct.calcsize("<8sII16sQQQIQ32sQ")
_ZERO_CRC = b"\x00\x00\x00\x00"
_RESERVED = bytes(144)
# What the CRC covers after the fields when packing: the zeroed CRC field and the reserved bytes.
_ZERO_TAIL = _ZERO_CRC + _RESERVED
# The fields before the CRC, and the CRC itself.
_PREFIX = struct.Struct("<8sII16sQQQIQ32sQ")
_CRC = struct.Struct("<I")
_MAX_PAYLOAD = 1 << 40


class EntryType(enum.IntEnum):
    BEGIN = 1
    DATA = 2
    COMMIT = 3
    ABORT = 4


class Record(NamedTuple):
    """One validated record as found at `offset` of a segment file (a tuple: recovery makes
    hundreds of thousands of these, and tuples are the cheapest Python object to build)."""

    offset: int
    txn_id: bytes
    sequence: int
    epoch: int
    timestamp_ns: int
    entry_type: int  # an EntryType value
    payload_size: int
    payload_sha256: bytes
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + self.payload_size


# The header without `reserved`: parsing never needs those bytes (the CRC covers them).
_FIELDS = struct.Struct("<8sII16sQQQIQ32sQI")


class _One(NamedTuple):
    """One record for `pack_record` to hand to `pack_records`."""

    txn_id: bytes
    entry_type: int
    payload: bytes
    sha256: bytes
    epoch: int


# What the scanners read: a segment's bytes, or a read-only mapping of its file (recovery maps
# segments it holds the lock on); both slice to bytes.
SegmentData = bytes | mmap.mmap


class RecordInvalid(Exception):
    """Internal signal from `parse_record`: the bytes at this offset are not a valid record.

    `torn` is True when the bytes simply run out (a write that never finished)."""

    def __init__(self, reason: str, *, torn: bool = False, txn_id: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.torn = torn
        self.txn_id = txn_id


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def header_crc(header: bytes) -> int:
    return crc32c(header[:CRC_OFFSET] + _ZERO_CRC + header[CRC_OFFSET + 4 :])


def pack_record(
    *,
    txn_id: bytes,
    sequence: int,
    epoch: int,
    timestamp_ns: int,
    entry_type: EntryType,
    payload: bytes,
    payload_sha256: bytes,
    offset: int,
) -> bytes:
    """Header + payload bytes for a record that will start at `offset` of its segment."""
    return pack_records([_One(txn_id, int(entry_type), payload, payload_sha256, epoch)],
                        sequence=sequence, offset=offset, timestamp_ns=timestamp_ns)


class Packable(Protocol):
    """What `pack_records` reads of a record to write (the writer's `PendingRecord`)."""

    # Read-only members: a NamedTuple (`_One`) qualifies, and an IntEnum entry type is an int.
    @property
    def txn_id(self) -> bytes: ...
    @property
    def entry_type(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def sha256(self) -> bytes: ...
    @property
    def epoch(self) -> int: ...


def pack_records(
    records: Sequence[Packable], *, sequence: int, offset: int, timestamp_ns: int
) -> bytes:
    """`records` packed back to back as one buffer (what the writer writes in one round): the
    first starts at `offset` of its segment with sequence number `sequence`, each next one
    follows it. The CRC is taken with its own field and the reserved bytes zero, so it is the
    CRC of the fields before it followed by 148 zero bytes."""
    pack = _PREFIX.pack
    crc_of = google_crc32c.value
    parts: list[bytes] = []
    append = parts.append
    for r in records:
        txn_id, sha, payload = r.txn_id, r.sha256, r.payload
        if len(txn_id) != 16 or len(sha) != 32:
            # struct would pad or cut them silently, and the record would name another transaction
            raise ValueError(
                f"txn_id must be 16 bytes and payload_sha256 32, not {len(txn_id)} and {len(sha)}"
            )
        size = len(payload)
        head = pack(MAGIC, VERSION, ENDIAN_MARKER, txn_id, sequence, r.epoch, timestamp_ns,
                    r.entry_type, size, sha, offset + HEADER_SIZE + size)
        append(head)
        append(_CRC.pack(crc_of(head + _ZERO_TAIL)))
        append(_RESERVED)
        append(payload)
        sequence += 1
        offset += HEADER_SIZE + size
    return b"".join(parts)


def _check_header(buf: SegmentData, offset: int) -> tuple[Any, ...]:
    """Validate the header at `offset`; return its fields (without `reserved`) or raise."""
    if len(buf) - offset < HEADER_SIZE:
        raise RecordInvalid(
            f"header cut short: {len(buf) - offset} of {HEADER_SIZE} bytes present", torn=True
        )
    fields = _FIELDS.unpack_from(buf, offset)
    magic, version, endian, txn_id, _seq, _epoch, _ts, etype, size, _sha, nxt, crc = fields
    if magic != MAGIC:
        raise RecordInvalid(f"bad magic {magic!r} (expected {MAGIC!r})")
    if endian != ENDIAN_MARKER:
        if endian == 0x78563412:
            raise RecordInvalid("endian marker is byte-swapped: written big-endian or corrupted")
        raise RecordInvalid(f"bad endian marker {endian:#x}")
    if version != VERSION:
        raise RecordInvalid(f"unsupported version {version} (this build reads {VERSION})")
    if header_crc(bytes(buf[offset : offset + HEADER_SIZE])) != crc:
        raise RecordInvalid("header CRC-32C mismatch")
    # Past the CRC the fields are what the writer wrote; these checks catch writer bugs.
    if not 1 <= etype <= 4:
        raise RecordInvalid(f"unknown entry type {etype}", txn_id=txn_id)
    if size > _MAX_PAYLOAD or nxt != offset + HEADER_SIZE + size:
        raise RecordInvalid(
            f"next_offset {nxt} does not follow offset {offset} + header + payload {size}",
            txn_id=txn_id,
        )
    return fields


def parse_header(buf: SegmentData, offset: int) -> Record:
    """Validate the header at `offset`; the returned record's payload is empty (not read)."""
    f = _check_header(buf, offset)
    return Record(offset, f[3], f[4], f[5], f[6], f[7], f[8], f[9], b"")


def parse_record(buf: SegmentData, offset: int) -> Record:
    """Validate header and payload SHA-256 at `offset`; raise `RecordInvalid` on any mismatch."""
    f = _check_header(buf, offset)
    size = f[8]
    start = offset + HEADER_SIZE
    end = start + size
    if end > len(buf):
        raise RecordInvalid(
            f"payload cut short: {len(buf) - start} of {size} bytes present",
            torn=True,
            txn_id=f[3],
        )
    payload = bytes(buf[start:end])
    if hashlib.sha256(payload).digest() != f[9]:
        raise RecordInvalid("payload SHA-256 mismatch", txn_id=f[3])
    return Record(offset, f[3], f[4], f[5], f[6], f[7], size, f[9], payload)


def scan_records(
    buf: SegmentData, limit: int | None = None
) -> tuple[list[Record], int, RecordInvalid | None]:
    """Parse records back to back from offset 0; stop at the first invalid one (or after
    `limit` records).

    Returns (records, stop offset, error or None). Recovery time is this loop, so it is
    `parse_record` inlined with as few Python operations per record as it can: one unpack, one
    CRC-32C, one SHA-256, one tuple. A BEGIN payload identical to the last one verified (the
    journal's transactions all carry the same context) is not hashed again: the same bytes
    have the same digest. `parse_record` runs only at the stop offset, to say what is wrong
    there."""
    unpack = _FIELDS.unpack_from
    new = tuple.__new__  # Record(...) runs a Python-level __new__; this skips it
    crc_of = google_crc32c.value
    sha = hashlib.sha256
    records: list[Record] = []
    append = records.append
    end = len(buf)
    remaining = -1 if limit is None else limit
    known_sha = known = b""  # the last BEGIN payload verified, and its digest
    offset = 0
    while offset < end and remaining:
        remaining -= 1
        start = offset + HEADER_SIZE
        if start > end:
            break
        magic, version, endian, tid, seq, epoch, ts, etype, size, psha, nxt, crc = unpack(buf, offset)
        stop = start + size
        if (
            magic != MAGIC or version != VERSION or endian != ENDIAN_MARKER or nxt != stop
            or stop > end or not 1 <= etype <= 4
            or crc_of(buf[offset : offset + CRC_OFFSET] + _ZERO_CRC
                      + buf[offset + CRC_OFFSET + 4 : start]) != crc
        ):
            break
        payload = buf[start:stop]
        if psha != known_sha or payload != known:
            if sha(payload).digest() != psha:
                break
            if etype == 1:
                known_sha, known = psha, payload
        append(new(Record, (offset, tid, seq, epoch, ts, etype, size, psha, payload)))
        offset = stop
    return _finish_scan(buf, records, offset, limit)


def _finish_scan(
    buf: SegmentData, records: list[Record], offset: int, limit: int | None
) -> tuple[list[Record], int, RecordInvalid | None]:
    end = len(buf)
    if offset >= end or (limit is not None and len(records) >= limit):
        return records, offset, None
    # The log's end inside a preallocated segment: nothing but zeros after the last record.
    written = offset + len(buf[offset:].rstrip(b"\0"))
    if written == offset:
        return records, offset, None
    try:
        parse_record(buf, offset)
    except RecordInvalid as exc:
        if not exc.torn and _cut_short(buf, offset, written):
            exc = RecordInvalid(
                f"{exc.reason}: cut short, {written - offset} bytes written before the "
                "zero-filled end of the segment", torn=True, txn_id=exc.txn_id,
            )
        return records, offset, exc
    raise AssertionError(f"fast scan and parse_record disagree at offset {offset}")


def _cut_short(buf: SegmentData, offset: int, written: int) -> bool:
    """True when the record at `offset` ends past the last byte written (`written`, zeros follow):
    a write that never finished, as a file ending there would be without preallocation."""
    if written - offset < HEADER_SIZE:
        return True
    try:
        header = parse_header(buf, offset)
    except RecordInvalid:
        return False
    return written < offset + HEADER_SIZE + header.payload_size
