"""The on-disk record format: a 256-byte little-endian header followed by the payload.

Owns: packing and validating one record (`<8sII16sQQQIQ32sQI144s`: magic, version, endian marker,
transaction id, sequence, epoch, timestamp_ns, entry type, payload size, payload SHA-256, next
offset, header CRC-32C, reserved). The CRC is CRC-32C (Castagnoli, via `google_crc32c`, hardware
accelerated) over the 256 header bytes with the CRC field zeroed; the payload is covered by its
SHA-256. Must never do I/O or decide what a bad record means for recovery (that is `recovery`).
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

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
_MAX_PAYLOAD = 1 << 40


class EntryType(enum.IntEnum):
    BEGIN = 1
    DATA = 2
    COMMIT = 3
    ABORT = 4


@dataclass(frozen=True, slots=True)
class RecordHeader:
    txn_id: bytes
    sequence: int
    epoch: int
    timestamp_ns: int
    entry_type: EntryType
    payload_size: int
    payload_sha256: bytes
    next_offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """One validated record as found at `offset` of a segment file."""

    offset: int
    header: RecordHeader
    payload: bytes

    @property
    def txn_id(self) -> bytes:
        return self.header.txn_id

    @property
    def entry_type(self) -> EntryType:
        return self.header.entry_type

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + self.header.payload_size


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
    size = len(payload)
    unsigned = HEADER.pack(
        MAGIC,
        VERSION,
        ENDIAN_MARKER,
        txn_id,
        sequence,
        epoch,
        timestamp_ns,
        int(entry_type),
        size,
        payload_sha256,
        offset + HEADER_SIZE + size,
        0,
        _RESERVED,
    )
    crc = crc32c(unsigned)
    return unsigned[:CRC_OFFSET] + struct.pack("<I", crc) + unsigned[CRC_OFFSET + 4 :] + payload


def parse_header(buf: bytes | memoryview, offset: int) -> RecordHeader:
    """Validate and decode the header at `offset` of `buf`; raise `RecordInvalid` if it is not one."""
    if len(buf) - offset < HEADER_SIZE:
        raise RecordInvalid(
            f"header cut short: {len(buf) - offset} of {HEADER_SIZE} bytes present", torn=True
        )
    raw = bytes(buf[offset : offset + HEADER_SIZE])
    (magic, version, endian, txn_id, seq, epoch, ts, etype, size, sha, nxt, crc, _res) = (
        HEADER.unpack(raw)
    )
    if magic != MAGIC:
        raise RecordInvalid(f"bad magic {magic!r} (expected {MAGIC!r})")
    if endian != ENDIAN_MARKER:
        if endian == 0x78563412:
            raise RecordInvalid("endian marker is byte-swapped: written big-endian or corrupted")
        raise RecordInvalid(f"bad endian marker {endian:#x}")
    if version != VERSION:
        raise RecordInvalid(f"unsupported version {version} (this build reads {VERSION})")
    if header_crc(raw) != crc:
        raise RecordInvalid("header CRC-32C mismatch")
    # Past the CRC the fields are what the writer wrote; these checks catch writer bugs.
    try:
        entry_type = EntryType(etype)
    except ValueError:
        raise RecordInvalid(f"unknown entry type {etype}", txn_id=txn_id) from None
    if size > _MAX_PAYLOAD or nxt != offset + HEADER_SIZE + size:
        raise RecordInvalid(
            f"next_offset {nxt} does not follow offset {offset} + header + payload {size}",
            txn_id=txn_id,
        )
    return RecordHeader(txn_id, seq, epoch, ts, entry_type, size, sha, nxt)


def parse_record(buf: bytes | memoryview, offset: int) -> Record:
    """Validate header and payload SHA-256 at `offset`; raise `RecordInvalid` on any mismatch."""
    header = parse_header(buf, offset)
    start = offset + HEADER_SIZE
    end = start + header.payload_size
    if end > len(buf):
        raise RecordInvalid(
            f"payload cut short: {len(buf) - start} of {header.payload_size} bytes present",
            torn=True,
            txn_id=header.txn_id,
        )
    payload = bytes(buf[start:end])
    if hashlib.sha256(payload).digest() != header.payload_sha256:
        raise RecordInvalid("payload SHA-256 mismatch", txn_id=header.txn_id)
    return Record(offset, header, payload)
