"""The record format: layout, CRC-32C, validation of every field, and the Merkle root."""

from __future__ import annotations

import hashlib
import random
import struct
import uuid
from dataclasses import dataclass, replace

import google_crc32c
import pytest

from tezzeret.wal import format as format_module
from tezzeret.wal.format import (
    CRC_OFFSET,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    EntryType,
    Record,
    RecordInvalid,
    pack_record,
    pack_records,
    parse_record,
    scan_records,
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


# -- the scan loop (parse_record inlined) against parse_record itself ------------------------------

def _log(rng: random.Random, n: int) -> bytes:
    buf = b""
    for _ in range(n):
        etype = rng.choice(list(EntryType))
        buf += _record(rng.randbytes(rng.randint(0, 700)), offset=len(buf), etype=etype)
    return buf


def _reference_scan(buf: bytes, limit: int | None = None) -> tuple[list[Record], int]:
    """What `scan_records` must find: `parse_record` from offset 0 until it refuses."""
    records: list[Record] = []
    offset = 0
    while offset < len(buf) and (limit is None or len(records) < limit):
        try:
            records.append(parse_record(buf, offset))
        except RecordInvalid:
            break
        offset = records[-1].end
    return records, offset


def _same_scan(buf: bytes, limit: int | None = None) -> tuple[int, int]:
    fast = scan_records(buf, limit)
    slow = _reference_scan(buf, limit)
    assert fast[0] == slow[0]
    assert all(type(r) is Record for r in fast[0])
    assert fast[1] == slow[1]
    rest = buf[fast[1]:]
    stopped_early = limit is not None and len(fast[0]) >= limit
    # The scan names what is wrong where it stops, unless only zeros (preallocated) follow.
    assert (fast[2] is None) == (stopped_early or not rest.strip(b"\0"))
    if fast[2] is not None:
        with pytest.raises(RecordInvalid) as info:
            parse_record(buf, fast[1])
        assert fast[2].reason.startswith(info.value.reason)
    return len(fast[0]), fast[1]


def test_scan_reads_clean_logs_and_limits() -> None:
    rng = random.Random(7)
    buf = _log(rng, 60)
    assert _same_scan(buf) == (60, len(buf))
    for limit in (0, 1, 59, 60, 61):
        _same_scan(buf, limit)
    assert _same_scan(b"") == (0, 0)


def test_scan_stops_where_parse_record_does_after_any_damage() -> None:
    rng = random.Random(11)
    for _ in range(300):
        buf = bytearray(_log(rng, rng.randint(1, 6)))
        what = rng.random()
        if what < 0.5:  # one bit anywhere
            bit = rng.randrange(len(buf) * 8)
            buf[bit // 8] ^= 1 << (bit % 8)
        elif what < 0.8:  # a torn tail
            del buf[rng.randrange(len(buf)) :]
        else:  # garbage appended
            buf += rng.randbytes(rng.randint(1, 400))
        _same_scan(bytes(buf))


def test_scan_accepts_a_repeated_context_only_where_it_is_the_same_bytes() -> None:
    # The scan skips hashing a BEGIN payload identical to the last one it verified; a payload
    # that differs (or a digest that does) must still be caught.
    tid = bytes(16)
    ctx = b"the same context"
    good = hashlib.sha256(ctx).digest()
    buf = b""
    for i in range(4):
        buf += pack_record(txn_id=tid, sequence=i, epoch=0, timestamp_ns=0, entry_type=EntryType.BEGIN,
                           payload=ctx, payload_sha256=good, offset=len(buf))
    assert _same_scan(buf) == (4, len(buf))
    forged = bytearray(buf)
    forged[-1] ^= 0x01  # the last BEGIN's payload differs, its digest does not
    assert _same_scan(bytes(forged)) == (3, 3 * (256 + len(ctx)))
    wrong = buf + pack_record(txn_id=tid, sequence=4, epoch=0, timestamp_ns=0,
                              entry_type=EntryType.BEGIN, payload=ctx,
                              payload_sha256=hashlib.sha256(b"other").digest(), offset=len(buf))
    assert _same_scan(wrong) == (4, len(buf))  # same bytes, another digest: refused


def test_header_crc_is_crc32c_with_the_crc_field_zeroed() -> None:
    rng = random.Random(3)
    for _ in range(200):
        header = rng.randbytes(HEADER_SIZE)
        zeroed = header[:CRC_OFFSET] + b"\0\0\0\0" + header[CRC_OFFSET + 4 :]
        assert format_module.header_crc(header) == google_crc32c.value(zeroed)


@dataclass
class _Pending:
    txn_id: bytes
    entry_type: EntryType
    payload: bytes
    sha256: bytes
    epoch: int


def _pending(rng: random.Random) -> _Pending:
    payload = rng.randbytes(rng.choice((0, 1, rng.randint(0, 5000))))
    return _Pending(rng.randbytes(16), rng.choice(list(EntryType)), payload,
                    hashlib.sha256(payload).digest(), rng.randrange(1 << 64))


def test_pack_records_is_pack_record_back_to_back_and_scan_reads_them_back() -> None:
    rng = random.Random(5)
    for _ in range(100):
        records = [_pending(rng) for _ in range(rng.randint(0, 12))]
        seq, offset, ts = rng.randrange(1 << 63), rng.randrange(1 << 40), rng.randrange(1 << 64)
        packed = pack_records(records, sequence=seq, offset=offset, timestamp_ns=ts)
        one_by_one = b""
        for i, p in enumerate(records):
            one_by_one += pack_record(txn_id=p.txn_id, sequence=seq + i, epoch=p.epoch,
                                      timestamp_ns=ts, entry_type=p.entry_type, payload=p.payload,
                                      payload_sha256=p.sha256, offset=offset + len(one_by_one))
        assert packed == one_by_one
        # Packed at offset 0 they read back as a clean log, field for field.
        buf = pack_records(records, sequence=seq, offset=0, timestamp_ns=ts)
        scanned, stop, error = scan_records(buf)
        assert error is None and stop == len(buf)
        assert [(r.txn_id, r.sequence, r.epoch, r.timestamp_ns, r.entry_type, r.payload)
                for r in scanned] == [(p.txn_id, seq + i, p.epoch, ts, int(p.entry_type), p.payload)
                                      for i, p in enumerate(records)]


def test_pack_refuses_ids_and_digests_of_the_wrong_size() -> None:
    # struct's "16s" would pad a short id with zeros: the record would name another transaction.
    good = _Pending(bytes(16), EntryType.DATA, b"x", hashlib.sha256(b"x").digest(), 0)
    for bad in (replace(good, txn_id=bytes(15)), replace(good, txn_id=bytes(17)),
                replace(good, sha256=bytes(31))):
        with pytest.raises(ValueError, match="16 bytes"):
            pack_records([good, bad], sequence=1, offset=0, timestamp_ns=0)
