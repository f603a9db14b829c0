"""The record format: layout, CRC-32C, validation of every field, and the Merkle root."""

from __future__ import annotations

import hashlib
import random
import struct
import uuid

import google_crc32c
import pytest

from tezzeret.wal.format import (
    CRC_OFFSET,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    EntryType,
    RecordInvalid,
    pack_record,
    parse_record,
)
from tezzeret.wal.merkle import merkle_root, tree_root


def _record(payload: bytes = b"payload bytes", offset: int = 0, etype: EntryType = EntryType.DATA) -> bytes:
    return pack_record(txn_id=uuid.uuid4().bytes, sequence=7, epoch=3, timestamp_ns=123,
                       entry_type=etype, payload=payload,
                       payload_sha256=hashlib.sha256(payload).digest(), offset=offset)


def test_header_layout_is_the_issue_format() -> None:
    assert HEADER.format == "<8sII16sQQQIQ32sQI144s"
    assert HEADER_SIZE == 256
    raw = _record(b"abc", offset=1000)
    fields = HEADER.unpack(raw[:HEADER_SIZE])
    magic, version, endian, _tid, seq, epoch, ts, etype, size, sha, nxt, crc, reserved = fields
    assert (magic, version, endian) == (MAGIC, 2, 0x12345678)
    assert (seq, epoch, ts, etype, size) == (7, 3, 123, int(EntryType.DATA), 3)
    assert sha == hashlib.sha256(b"abc").digest()
    assert nxt == 1000 + 256 + 3
    assert reserved == bytes(144)
    zeroed = raw[:CRC_OFFSET] + b"\0\0\0\0" + raw[CRC_OFFSET + 4 : HEADER_SIZE]
    assert crc == google_crc32c.value(zeroed)
    assert raw[HEADER_SIZE:] == b"abc"


def test_roundtrip() -> None:
    raw = b"x" * 40 + _record(b"hello", offset=40)
    record = parse_record(raw, 40)
    assert record.payload == b"hello" and record.end == len(raw)
    assert record.entry_type == EntryType.DATA


@pytest.mark.parametrize(
    ("field_offset", "value", "reason"),
    [
        (0, b"ESPERWAX", "magic"),
        (8, struct.pack("<I", 3), "version"),
        (12, struct.pack(">I", 0x12345678), "byte-swapped"),
        (12, struct.pack("<I", 1), "endian"),
    ],
)
def test_bad_fields_are_named(field_offset: int, value: bytes, reason: str) -> None:
    raw = bytearray(_record())
    raw[field_offset : field_offset + len(value)] = value
    with pytest.raises(RecordInvalid, match=reason):
        parse_record(bytes(raw), 0)


def test_every_single_bit_flip_is_detected() -> None:
    for etype, payload in ((EntryType.BEGIN, b"ctx"), (EntryType.DATA, b"d" * 50),
                           (EntryType.COMMIT, b"r" * 64), (EntryType.ABORT, b"")):
        raw = _record(payload, etype=etype)
        for bit in range(len(raw) * 8):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(RecordInvalid):
                parse_record(bytes(flipped), 0)


def test_short_reads_are_torn() -> None:
    raw = _record(b"z" * 100)
    for cut in (0, 1, 100, 255, 256, 300, len(raw) - 1):
        with pytest.raises(RecordInvalid) as info:
            parse_record(raw[:cut], 0)
        assert info.value.torn


def test_merkle_root_binds_context_segments_and_order() -> None:
    segs = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    root = merkle_root(b"ctx", segs)
    assert root == merkle_root(b"ctx", list(segs))
    assert root != merkle_root(b"ctx2", segs)
    assert root != merkle_root(b"ctx", segs[::-1])
    assert root != merkle_root(b"ctx", segs[:4])
    # Odd levels duplicate the last node.
    a, b, c = segs[:3]
    h = lambda x: hashlib.sha256(x).digest()  # noqa: E731
    assert tree_root([a, b, c]) == h(h(a + b) + h(c + c))
    assert len(root) == 64 and int(root, 16) >= 0


def test_random_payloads_roundtrip() -> None:
    rng = random.Random(1)
    buf = b""
    for _ in range(50):
        buf += _record(rng.randbytes(rng.randint(0, 3000)), offset=len(buf))
    offset = 0
    count = 0
    while offset < len(buf):
        offset = parse_record(buf, offset).end
        count += 1
    assert count == 50
