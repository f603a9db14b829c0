"""The WAL on a real disk: transactions, barriers, group commit, recovery, rotation, checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import uuid
from pathlib import Path

import pytest
from wal_helpers import commit_series, ctx, digest, records_bytes, write_txns

from tezzeret import metrics
from tezzeret.leyline import pb
from tezzeret.wal import (
    TxnState,
    Wal,
    WalIOError,
    WalLocked,
    WalOptions,
    WalCorruption,
    WalStateError,
)
from tezzeret.wal.faults import FaultyFileLayer
from tezzeret.wal.fileio import OsFileLayer
from tezzeret.wal.format import HEADER, HEADER_SIZE, EntryType, pack_record
from tezzeret.wal.merkle import merkle_root
from tezzeret.wal.reader import list_segments, scan_segment, segment_name
from tezzeret.wal.recovery import CommittedTransaction, analyze


def _committed(wal: Wal) -> dict[str, list[bytes]]:
    return {t.txn_id: t.payloads for t in wal.recovered_transactions() if not t.is_checkpoint}


def test_commit_survives_reopen_with_its_merkle_root(tmp_path: Path, mode: str) -> None:
    written = write_txns(tmp_path, 5, mode=mode)
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        assert wal.recovery.outcome == "clean"
        assert wal.recovery.committed == 5
        assert _committed(wal) == written
        for txn in wal.recovered_transactions():
            assert txn.context.model_hash.startswith("m")


def test_two_barriers_per_transaction(tmp_path: Path, mode: str) -> None:
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        assert wal.dsync is (mode == "O_DSYNC")
        before = wal.syncs
        for i in range(10):
            txn = wal.begin(ctx(i))
            txn.data(b"a" * 100, kind="artifact")
            txn.data(b"m")
            txn.commit()
        assert wal.syncs - before == 20


def test_open_transactions_are_aborted_and_handed_back(tmp_path: Path, mode: str) -> None:
    opts = WalOptions(durability_mode=mode)
    with Wal.open(tmp_path, opts) as wal:
        done = wal.begin(ctx(0))
        done.data(b"kept")
        done.commit()
        hanging = wal.begin(ctx(1), durable=True)
        hanging.data(b"partial")
        hanging.flush()
        buffered = wal.begin(ctx(2))
        buffered.data(b"never flushed")
    with Wal.open(tmp_path, opts) as wal:
        report = wal.recovery
        # BEGIN and DATA wait in the transaction until a barrier: `buffered` never reached disk.
        expected = [hanging.txn_id]
        assert [t.txn_id for t in report.open_transactions] == expected
        assert report.aborted == len(expected)
        open_txn = report.open_transactions[0]
        assert open_txn.payloads == [b"partial"]
        assert open_txn.context.model_hash == "m1"
        assert list(_committed(wal)) == [done.txn_id]
    with Wal.open(tmp_path, opts) as wal:
        # The ABORT written by the first recovery closed it for good.
        assert wal.recovery.aborted == 0 and wal.recovery.previously_aborted == len(expected)


def test_abort_and_state_errors(tmp_path: Path, mode: str) -> None:
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        txn = wal.begin(ctx(0), durable=True)
        txn.data(b"x")
        txn.abort()
        assert txn.state is TxnState.ABORTED
        with pytest.raises(WalStateError, match="aborted"):
            txn.data(b"y")
        ok = wal.begin(ctx(1))
        ok.commit()
        with pytest.raises(WalStateError, match="committed"):
            ok.commit()
        with pytest.raises(WalStateError, match="kind"):
            wal.begin(ctx(2)).data(b"z", kind="bogus")
        with pytest.raises(WalStateError, match="reserved"):
            wal.begin(pb.ExecutionContext(operation="CHECKPOINT"))
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        assert list(_committed(wal)) == [ok.txn_id]
        assert wal.recovery.previously_aborted == 1
        assert wal.recovery.aborted == 0  # txn 2's BEGIN never left memory


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with Wal.open(tmp_path):
        with pytest.raises(WalLocked, match="another process"):
            Wal.open(tmp_path)


def test_torn_tail_truncated_at_every_length(tmp_path: Path) -> None:
    written = write_txns(tmp_path / "src", 3)
    [(_, seg)] = list_segments(tmp_path / "src")
    full = records_bytes(seg)
    boundaries = {r.offset for r in scan_segment(1, seg).records} | {len(full)}
    order = list(written)
    for cut in range(0, len(full) + 1, 7):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / seg.name).write_bytes(full[:cut])
        analysis = analyze(d)
        assert [p.kind for p in analysis.problems] == ([] if cut in boundaries else ["torn_tail"])
        assert [t.txn_id for t in analysis.committed] == order[: len(analysis.committed)]
        if cut % 5:
            continue  # full recovery (which syncs) on a fifth of the cuts keeps the test quick
        with Wal.open(d) as wal:
            report = wal.recovery
            assert report.outcome == ("clean" if cut in boundaries else "truncated_tail")
            assert report.truncated_bytes == (0 if cut in boundaries else cut - max(b for b in boundaries if b <= cut))
            got = list(_committed(wal))
            assert got == order[: len(got)]  # a prefix, nothing invented, nothing reordered
            for txn_id in got:
                assert _committed(wal)[txn_id] == written[txn_id]
        assert not analyze(d).problems


def test_records_overwrite_preallocated_zeros_and_reopen_continues_after_them(tmp_path: Path, mode: str) -> None:
    first = write_txns(tmp_path, 3, mode=mode)
    [(_, seg)] = list_segments(tmp_path)
    end = len(records_bytes(seg))
    assert seg.stat().st_size > end and seg.read_bytes()[end:].count(0) == seg.stat().st_size - end
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        assert wal.recovery.outcome == "clean" and wal.recovery.truncated_bytes == 0
        txn = wal.begin(ctx(9))
        txn.data(b"after reopen")
        txn.commit()
    records = scan_segment(1, seg).records
    assert records[-1].txn_id.hex() == txn.txn_id and records[-4].end == end  # no gap, no overlap
    with Wal.open(tmp_path) as wal:
        assert _committed(wal) == {**first, txn.txn_id: [b"after reopen"]}


def test_damage_in_the_zero_filled_tail(tmp_path: Path) -> None:
    """A record cut short with zeros after it was never acknowledged: rolled back, not lost. A
    stray non-zero byte after the last record is a torn tail: cut off, nothing lost."""
    written = write_txns(tmp_path / "a", 2)
    last = list(written)[-1]
    [(_, seg)] = list_segments(tmp_path / "a")
    full = seg.read_bytes()
    end = len(records_bytes(seg))
    commit = scan_segment(1, seg).records[-1]
    cut = bytearray(full)
    cut[commit.offset + 256 + 10 : end] = bytes(end - commit.offset - 256 - 10)  # payload half written
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / seg.name).write_bytes(bytes(cut))
    torn = analyze(tmp_path / "b")
    assert [p.kind for p in torn.problems] == ["torn_tail"] and torn.lost == []
    assert "cut short" in torn.problems[0].reason
    assert [t.txn_id for t in torn.open] == [last]
    stray = bytearray(full)
    stray[end + 1000] = 0x5A
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / seg.name).write_bytes(bytes(stray))
    with Wal.open(tmp_path / "c") as wal:
        assert wal.recovery.outcome == "truncated_tail" and wal.recovery.lost_transactions == []
        assert _committed(wal) == written
        wal.begin(ctx(5)).commit()
    assert not analyze(tmp_path / "c").problems


def test_bit_flips_anywhere_are_detected_never_accepted(tmp_path: Path) -> None:
    import random

    written = write_txns(tmp_path / "src", 4)
    [(_, seg)] = list_segments(tmp_path / "src")
    full = records_bytes(seg)
    rng = random.Random(5)
    bits = rng.sample(range(len(full) * 8), 300)
    for n, bit in enumerate(bits):
        d = tmp_path / f"flip{n}"
        d.mkdir()
        data = bytearray(full)
        data[bit // 8] ^= 1 << (bit % 8)
        (d / seg.name).write_bytes(bytes(data))
        analysis = analyze(d)
        assert analysis.problems, f"flip of bit {bit} went unnoticed"
        mapped = analyze(d, exclusive=True)  # what recovery runs: the segments memory-mapped
        assert (mapped.committed, mapped.problems, mapped.cut, mapped.lost, mapped.in_doubt) == (
            analysis.committed, analysis.problems, analysis.cut, analysis.lost, analysis.in_doubt)
        for txn in analysis.committed:
            assert written[txn.txn_id] == txn.payloads
        if n % 8:
            continue
        with Wal.open(d) as wal:
            # No checkpoint in this log: damage is never labelled as restored from one.
            assert wal.recovery.outcome in ("truncated_tail", "damage_quarantined")
            for txn_id, payloads in _committed(wal).items():
                assert written[txn_id] == payloads


def test_corruption_before_the_tail_quarantines_and_names_losses(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 4)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    records = scan_segment(1, seg).records
    # Damage the payload of the second transaction's first DATA record.
    target = [r for r in records if r.txn_id.hex() == order[1]][1]
    data = bytearray(seg.read_bytes())
    data[target.offset + 256] ^= 0x01
    seg.write_bytes(bytes(data))
    analysis = analyze(tmp_path)
    assert analysis.corrupt and analysis.problems[0].kind == "corrupt"
    assert analysis.problems[0].offset == target.offset
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined" and report.base_checkpoint is None
        assert list(_committed(wal)) == order[:1]
        assert set(report.lost_transactions) == set(order[1:])
        assert report.quarantined_bytes == len(data) - target.offset
        assert list((tmp_path / "quarantine").glob(f"{seg.name}.from-{target.offset}.*"))
        txn = wal.begin(ctx(9))
        txn.data(b"after")
        txn.commit()
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.outcome == "clean"
        assert list(_committed(wal)) == [order[0], txn.txn_id]


def test_merkle_mismatch_is_caught(tmp_path: Path) -> None:
    from tezzeret.wal.format import EntryType, pack_record
    import hashlib
    import uuid

    tid = uuid.uuid4().bytes
    parts = []
    payloads = [(EntryType.BEGIN, b"ctx"), (EntryType.DATA, b"d"), (EntryType.COMMIT, b"0" * 64)]
    offset = 0
    for seq, (etype, payload) in enumerate(payloads, 1):
        parts.append(pack_record(txn_id=tid, sequence=seq, epoch=0, timestamp_ns=0, entry_type=etype,
                                 payload=payload, payload_sha256=hashlib.sha256(payload).digest(),
                                 offset=offset))
        offset += 256 + len(payload)
    (tmp_path / "wal-00000001.seg").write_bytes(b"".join(parts))
    analysis = analyze(tmp_path)
    assert [p.kind for p in analysis.problems] == ["merkle_mismatch"]
    assert analysis.lost == [tid.hex()] and not analysis.committed


def test_group_commit_shares_syncs_and_keeps_every_commit(tmp_path: Path, mode: str) -> None:
    opts = WalOptions(durability_mode=mode, group_commit_window_us=200)
    committed: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    with Wal.open(tmp_path, opts) as wal:
        start = wal.syncs

        threads = [threading.Thread(target=commit_series, args=(wal, str(w), 25, committed, lock))
                   for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        syncs = wal.syncs - start
    assert len(committed) == 200
    assert syncs < 2 * 200, "concurrent commits never shared a sync"
    with Wal.open(tmp_path, opts) as wal:
        assert _committed(wal) == committed


class _WriteLog(OsFileLayer):
    """Records, in order, each write (as the (txn id, entry type) of its records) and each sync,
    and which COMMITs are durable: under O_DSYNC on the write's return, else at the next sync."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[tuple[bytes, int]]]] = []
        self.durable_commits: set[str] = set()
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self.dsync = False

    def write(self, handle: int, data: bytes) -> None:
        super().write(handle, data)
        records, pos = [], 0
        while pos < len(data):
            fields = HEADER.unpack_from(data, pos)
            assert fields[0] == b"ESPERWAL"
            records.append((fields[3], fields[7]))
            pos += HEADER_SIZE + fields[8]
        with self._lock:
            self.events.append(("write", records))
            self._pending += [t.hex() for t, e in records if e == EntryType.COMMIT]
            if self.dsync:
                self.sync_done()

    def sync(self, handle: int) -> None:
        super().sync(handle)
        with self._lock:
            self.events.append(("sync", []))
            self.sync_done()

    def sync_done(self) -> None:
        self.durable_commits.update(self._pending)
        self._pending = []


def test_commits_share_rounds_without_reaching_the_file_before_their_data_is_durable(
    tmp_path: Path, mode: str
) -> None:
    """The writer puts one cohort's COMMITs and the next cohort's BEGIN/DATA in one write; no
    COMMIT may be written before a barrier covering its transaction's data, and no commit may
    return before its COMMIT is durable."""
    layer = _WriteLog()
    early: list[str] = []
    committed: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    with Wal.open(tmp_path, WalOptions(durability_mode=mode), file_layer=layer) as wal:
        layer.dsync = wal.dsync
        layer.events.clear()

        def check(txn_id: str) -> None:
            if txn_id not in layer.durable_commits:
                early.append(txn_id)

        threads = [threading.Thread(target=commit_series, args=(wal, str(w), 25, committed, lock, check))
                   for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not early, f"{len(early)} commits returned before their COMMIT was durable"
    durable: set[bytes] = set()  # transactions whose BEGIN/DATA a barrier has covered
    written: set[bytes] = set()
    shared_rounds = 0
    for kind, records in layer.events:
        if kind == "sync":
            durable |= written
            continue
        for tid, etype in records:
            if etype == EntryType.COMMIT:
                assert tid in durable, f"COMMIT of {tid.hex()} written before its data was durable"
            else:
                written.add(tid)
        kinds = {etype for _, etype in records}
        shared_rounds += EntryType.COMMIT in kinds and EntryType.BEGIN in kinds
        if wal.dsync:
            durable |= written
    assert shared_rounds > 0, "no write carried one cohort's COMMITs and the next cohort's data"
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as again:
        assert _committed(again) == committed


def _write_events(directory: Path, events: list[tuple[bytes, EntryType, bytes]], split: int) -> None:
    """Records for `events` (txn id, type, payload) as segments 1 and 2, split at `split`."""
    directory.mkdir()
    seq = 1
    for index, part in ((1, events[:split]), (2, events[split:])):
        out = bytearray()
        for tid, etype, payload in part:
            out += pack_record(txn_id=tid, sequence=seq, epoch=seq % 3, timestamp_ns=seq,
                               entry_type=etype, payload=payload,
                               payload_sha256=hashlib.sha256(payload).digest(), offset=len(out))
            seq += 1
        (directory / segment_name(index)).write_bytes(bytes(out))


def _random_events(rng: random.Random) -> list[tuple[bytes, EntryType, bytes]]:
    """Interleaved transactions that commit (with one DATA or several, a right root or a wrong
    one), abort or stay open, plus duplicate BEGINs and records of unknown or ended ones."""
    events: list[tuple[bytes, EntryType, bytes]] = []
    live: dict[bytes, tuple[bytes, list[bytes]]] = {}
    ended: list[bytes] = []
    for _ in range(rng.randint(1, 80)):
        roll = rng.random()
        if roll < 0.3 or not live:
            tid, ctx_bytes = rng.randbytes(16), rng.randbytes(rng.randint(0, 40))
            live[tid] = (ctx_bytes, [])
            events.append((tid, EntryType.BEGIN, ctx_bytes))
        elif roll < 0.6:
            tid = rng.choice(list(live))
            payload = rng.randbytes(rng.randint(0, 60))
            live[tid][1].append(hashlib.sha256(payload).digest())
            events.append((tid, EntryType.DATA, payload))
        elif roll < 0.85:
            tid = rng.choice(list(live))
            ctx_bytes, hashes = live.pop(tid)
            root = merkle_root(ctx_bytes, hashes)
            if rng.random() < 0.15:
                root = "0" * 64
            events.append((tid, EntryType.COMMIT, root.encode()))
            ended.append(tid)
        elif roll < 0.93:
            tid = rng.choice(list(live))
            live.pop(tid)
            events.append((tid, EntryType.ABORT, b""))
            ended.append(tid)
        else:
            tid = rng.choice(ended + list(live) + [rng.randbytes(16)])
            events.append((tid, rng.choice(list(EntryType)), b"stray"))
    return events


def _model(events: list[tuple[bytes, EntryType, bytes]]) -> tuple[object, ...]:
    """What grouping must find in `events`, written the plain way: committed (id, payloads) in
    commit order, lost (Merkle mismatch), ABORTs met, open (id, payloads), problem kinds."""
    live: dict[bytes, tuple[bytes, list[bytes]]] = {}
    ended: set[bytes] = set()
    committed, lost, kinds, aborted = [], [], [], 0
    for tid, etype, payload in events:
        if etype == EntryType.BEGIN:
            if tid in live or tid in ended:
                kinds.append("duplicate")
            else:
                live[tid] = (payload, [])
        elif tid not in live:
            kinds.append("orphan")
        elif etype == EntryType.DATA:
            live[tid][1].append(payload)
        else:
            ctx_bytes, data = live.pop(tid)
            ended.add(tid)
            if etype == EntryType.ABORT:
                aborted += 1
            elif payload == merkle_root(ctx_bytes, [hashlib.sha256(d).digest() for d in data]).encode():
                committed.append((tid.hex(), data))
            else:
                lost.append(tid.hex())
                kinds.append("merkle_mismatch")
    return committed, lost, aborted, [(t.hex(), d) for t, (_, d) in live.items()], kinds


def test_grouping_finds_what_a_plain_model_of_the_log_finds(tmp_path: Path) -> None:
    rng = random.Random(5)
    seen: set[str] = set()
    for case in range(150):
        events = _random_events(rng)
        directory = tmp_path / str(case)
        _write_events(directory, events, rng.randint(0, len(events)))
        found = analyze(directory)
        assert all(type(t) is CommittedTransaction for t in found.committed)
        assert (
            [(t.txn_id, t.payloads) for t in found.committed], found.lost, found.previously_aborted,
            [(t.txn_id, t.payloads) for t in found.open], [p.kind for p in found.problems],
        ) == _model(events)
        assert found.last_sequence == len(events)
        seen |= {p.kind for p in found.problems}
        seen |= {f"{len(t.payloads)} DATA" for t in found.committed if len(t.payloads) < 3}
        seen |= {"aborted"} if found.previously_aborted else set()
        seen |= {"open"} if found.open else set()
    # Every path of the loop was taken.
    assert {"merkle_mismatch", "orphan", "duplicate", "0 DATA", "1 DATA", "2 DATA", "aborted",
            "open"} <= seen, seen


def test_transaction_ids_are_unique_uuids_across_threads_and_opens(tmp_path: Path) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    for _ in range(2):  # a reopen draws a new random part, so ids never repeat across opens
        with Wal.open(tmp_path) as wal:

            def take() -> None:
                mine = [wal.begin(ctx(0)).txn_id for _ in range(500)]
                with lock:
                    ids.extend(mine)

            threads = [threading.Thread(target=take) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert len(set(ids)) == len(ids) == 4000
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(8, uuid.RFC_4122)}
    assert len({u.bytes[:8] for u in parsed}) == 2


def test_rotation_and_recovery_across_segments(tmp_path: Path, mode: str) -> None:
    opts = WalOptions(durability_mode=mode, max_wal_size_mb=0.01)  # ~10 KiB segments
    written = write_txns(tmp_path, 60, mode=mode, max_wal_size_mb=0.01)
    assert len(list_segments(tmp_path)) > 3
    for _, seg in list_segments(tmp_path)[:-1]:  # rotation cut the zeros after their records
        assert records_bytes(seg) == seg.read_bytes()
    with Wal.open(tmp_path, opts) as wal:
        assert wal.recovery.outcome == "clean"
        assert _committed(wal) == written
        assert len(wal.recovery.segments) == len(list_segments(tmp_path))


def test_missing_middle_segment_is_reported(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 60, max_wal_size_mb=0.01)
    segments = list_segments(tmp_path)
    segments[1][1].unlink()
    analysis = analyze(tmp_path)
    assert "missing_segment" in {p.kind for p in analysis.problems}
    assert analysis.corrupt
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.outcome == "damage_quarantined"
        kept = _committed(wal)
        assert kept and all(written[t] == p for t, p in kept.items())
        assert wal.recovery.lost_transactions


def test_missing_history_refuses_and_touches_nothing(tmp_path: Path) -> None:
    write_txns(tmp_path, 60, max_wal_size_mb=0.01)
    segments = list_segments(tmp_path)
    segments[0][1].unlink()
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.iterdir())
    with pytest.raises(WalCorruption, match="history before it is missing"):
        Wal.open(tmp_path)
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.iterdir()) == before
    with pytest.raises(WalCorruption):  # not WalLocked: the failed open released its lock
        Wal.open(tmp_path)


def test_eio_poisons_the_writer(tmp_path: Path, mode: str) -> None:
    layer = FaultyFileLayer(seed=3)
    wal = Wal.open(tmp_path, WalOptions(durability_mode=mode), file_layer=layer)
    ok = wal.begin(ctx(0))
    ok.data(b"durable")
    ok.commit()
    layer.teardown_on_next_write()
    with pytest.raises(WalIOError):
        txn = wal.begin(ctx(1), durable=False)
        txn.data(b"lost")
        txn.commit()
    with pytest.raises(WalIOError, match="restart"):
        t2 = wal.begin(ctx(2))
        t2.commit()
    wal.close()
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as again:
        assert list(_committed(again)) == [ok.txn_id]


def test_async_twins_do_no_io_on_the_event_loop(tmp_path: Path) -> None:
    writer_threads: set[int] = set()

    class Recording(OsFileLayer):
        def write(self, handle: int, data: bytes) -> None:
            writer_threads.add(threading.get_ident())
            super().write(handle, data)

        def sync(self, handle: int) -> None:
            writer_threads.add(threading.get_ident())
            super().sync(handle)

    async def main() -> tuple[int, list[str]]:
        loop_thread = threading.get_ident()
        wal = await Wal.open_async(tmp_path, WalOptions(durability_mode="fsync"), file_layer=Recording())
        writer_threads.clear()

        async def one(i: int) -> str:
            txn = await wal.begin_async(ctx(i))
            await txn.data_async(f"p{i}".encode())
            await txn.commit_async()
            return txn.txn_id

        ids = await asyncio.gather(*(one(i) for i in range(16)))
        await wal.close_async()
        return loop_thread, list(ids)

    loop_thread, ids = asyncio.run(main())
    assert writer_threads and loop_thread not in writer_threads
    with Wal.open(tmp_path) as wal:
        assert set(_committed(wal)) == set(ids)


def test_async_and_thread_committers_share_batches(tmp_path: Path, mode: str) -> None:
    """Coroutines and threads commit side by side: the writer's thread leads for the loop, a
    thread caller may lead a batch holding coroutines' records, and everyone returns durable."""
    committed: dict[str, list[bytes]] = {}
    lock = threading.Lock()

    async def main() -> int:
        wal = await Wal.open_async(tmp_path, WalOptions(durability_mode=mode))
        start = wal.syncs

        async def task_worker(w: int) -> None:
            for i in range(25):
                txn = await wal.begin_async(ctx(i))
                payload = f"a{w}-{i}".encode()
                await txn.data_async(payload)
                record = await txn.commit_async()
                assert txn.state is TxnState.COMMITTED and record.txn_id == txn.txn_id
                committed[txn.txn_id] = [payload]

        threads = [asyncio.to_thread(commit_series, wal, f"t{w}", 25, committed, lock) for w in range(3)]
        await asyncio.gather(*threads, *(task_worker(w) for w in range(8)))
        syncs = wal.syncs - start
        await wal.close_async()
        return syncs

    syncs = asyncio.run(main())
    assert len(committed) == 11 * 25
    assert syncs < 2 * len(committed), "concurrent commits never shared a sync"
    with Wal.open(tmp_path) as wal:
        assert _committed(wal) == committed


def test_async_committers_see_an_io_failure_and_nobody_hangs(tmp_path: Path, mode: str) -> None:
    layer = FaultyFileLayer(seed=5)

    async def main() -> tuple[str, list[BaseException | None]]:
        wal = await Wal.open_async(tmp_path, WalOptions(durability_mode=mode), file_layer=layer)
        ok = await wal.begin_async(ctx(0))
        await ok.data_async(b"durable")
        await ok.commit_async()
        layer.teardown_on_next_write()

        async def one(i: int) -> None:
            txn = await wal.begin_async(ctx(i))
            await txn.data_async(b"lost")
            await txn.commit_async()

        outcomes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(6)), return_exceptions=True), 30)
        with pytest.raises(WalIOError, match="restart"):
            late = await wal.begin_async(ctx(9))
            await late.commit_async()
        await wal.close_async()
        return ok.txn_id, [o if isinstance(o, BaseException) else None for o in outcomes]

    ok_id, outcomes = asyncio.run(main())
    assert outcomes and all(isinstance(o, WalIOError) for o in outcomes), outcomes
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as again:
        assert list(_committed(again)) == [ok_id]


def test_a_cancelled_async_commit_still_lands_whole(tmp_path: Path) -> None:
    """Cancelling the awaiting task cannot take back records already queued: the commit is
    written (and handed to the state machine) or not at all, never half."""

    async def main() -> str:
        wal = await Wal.open_async(tmp_path)
        txn = await wal.begin_async(ctx(0))
        await txn.data_async(b"queued")
        task = asyncio.ensure_future(txn.commit_async())
        await asyncio.sleep(0)  # the commit is queued on the writer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wal.close_async()
        return txn.txn_id

    txn_id = asyncio.run(main())
    with Wal.open(tmp_path) as wal:
        assert _committed(wal) == {txn_id: [b"queued"]}


def test_recovery_metrics_are_exported(tmp_path: Path) -> None:
    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0

    before_clean = value("tezzeret_wal_recovery_total", {"outcome": "empty"})
    before_count = value("tezzeret_wal_recovery_duration_ms_count")
    before_commits = value("tezzeret_wal_transactions_total", {"status": "committed"})
    before_syncs = value("tezzeret_wal_fsync_duration_ms_count")
    write_txns(tmp_path, 2)
    write_txns(tmp_path / "f", 2, mode="fsync")
    assert value("tezzeret_wal_fsync_duration_ms_count") >= before_syncs + 8
    assert value("tezzeret_wal_recovery_total", {"outcome": "empty"}) == before_clean + 2
    assert value("tezzeret_wal_recovery_duration_ms_count") == before_count + 2
    assert value("tezzeret_wal_transactions_total", {"status": "committed"}) == before_commits + 4


def test_wal_files_are_not_world_writable(tmp_path: Path) -> None:
    write_txns(tmp_path, 1)
    [(_, seg)] = list_segments(tmp_path)
    assert not os.stat(seg).st_mode & 0o002
    assert digest([b"a"]) != digest([b"b"])


def test_a_commit_cut_short_is_rolled_back_a_damaged_one_is_reported_lost(tmp_path: Path) -> None:
    written = write_txns(tmp_path / "a", 2)
    last = list(written)[-1]
    [(_, seg)] = list_segments(tmp_path / "a")
    full = records_bytes(seg)
    commit = scan_segment(1, seg).records[-1]
    assert commit.entry_type == 3 and commit.txn_id.hex() == last
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / seg.name).write_bytes(full[:-5])  # COMMIT header whole, payload cut
    torn = analyze(tmp_path / "b")
    assert [p.kind for p in torn.problems] == ["torn_tail"] and torn.lost == []
    assert [t.txn_id for t in torn.open] == [last]
    damaged = bytearray(full)
    damaged[-1] ^= 0x01  # COMMIT whole, payload damaged
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / seg.name).write_bytes(bytes(damaged))
    flipped = analyze(tmp_path / "c")
    assert [p.kind for p in flipped.problems] == ["torn_tail"] and flipped.lost == [last]


def test_use_after_close_is_a_state_error(tmp_path: Path, mode: str) -> None:
    wal = Wal.open(tmp_path, WalOptions(durability_mode=mode))
    txn = wal.begin(ctx(0), durable=True)
    wal.close()
    with pytest.raises(WalStateError, match="closed"):
        txn.commit()
    with pytest.raises(WalStateError, match="closed"):
        wal.begin(ctx(1))


def test_an_exception_inside_a_write_poisons_the_writer(tmp_path: Path, mode: str) -> None:
    class Boom(RuntimeError):
        pass

    def hook(point: str) -> None:
        if point == "after_commit_before_sync":
            raise Boom(point)

    wal = Wal.open(tmp_path, WalOptions(durability_mode=mode), crash_hook=hook)
    txn = wal.begin(ctx(0))
    txn.data(b"x")
    with pytest.raises(Boom):
        txn.commit()
    with pytest.raises(WalIOError, match="restart"):
        wal.begin(ctx(1)).commit()
    wal.close()
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as again:
        # In doubt, and resolved atomically: either committed whole or rolled back.
        committed = _committed(again)
        assert committed in ({txn.txn_id: [b"x"]}, {})
        assert again.recovery.outcome == "clean"


def test_recovery_interrupted_while_quarantining_repeats_the_same_cut(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 60, max_wal_size_mb=0.01)
    segments = list_segments(tmp_path)
    assert len(segments) >= 4
    index, damaged = segments[1]
    records = scan_segment(index, damaged).records
    victim = records[len(records) // 2]
    data = bytearray(damaged.read_bytes())
    data[victim.offset + 20] ^= 0x10  # inside the transaction id: header CRC fails
    damaged.write_bytes(bytes(data))
    clean = analyze(tmp_path)
    expected = [t.txn_id for t in clean.committed]
    # The state a crash leaves after recovery moved the later segments but before it cut this one.
    (tmp_path / "quarantine").mkdir()
    for _, later in segments[2:]:
        later.rename(tmp_path / "quarantine" / later.name)
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.outcome == "damage_quarantined"
        assert list(_committed(wal)) == expected
        assert all(written[t] == p for t, p in _committed(wal).items())
    assert not analyze(tmp_path).problems


class _Snapshots:
    """The smallest state machine a checkpoint needs: it remembers committed transaction ids."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def apply(self, txn: object) -> None:
        self.ids.append(txn.txn_id)  # type: ignore[attr-defined]

    def snapshot(self) -> list[bytes]:
        return [i.encode() for i in self.ids]


def test_checkpoints_get_their_turn_under_a_steady_stream_of_commits(tmp_path: Path, mode: str) -> None:
    # Leaders hand the writer straight to the next queued commit; a waiting checkpoint must still
    # get in, and no commit may be lost or reordered around it.
    committed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        machine = _Snapshots()
        wal.attach(machine)

        def worker(w: int) -> None:
            i = 0
            while not stop.is_set():
                txn = wal.begin(ctx(i))
                txn.data(f"{w}-{i}".encode())
                txn.commit()
                with lock:
                    committed.append(txn.txn_id)
                i += 1

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        try:
            names = [wal.checkpoint() for _ in range(3)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert len(set(names)) == 3
        assert sorted(machine.ids) == sorted(committed)
    with Wal.open(tmp_path, WalOptions(durability_mode=mode)) as wal:
        assert wal.recovery.outcome == "clean"
        assert wal.last_checkpoint == names[-1]
        recovered = wal.recovered_transactions()
        assert recovered[0].is_checkpoint
        # The checkpoint's snapshot plus what came after it is every commit, each once.
        after = [t.txn_id for t in recovered[1:]]
        in_snapshot = [p.decode() for p in recovered[0].payloads]
        assert sorted(in_snapshot + after) == sorted(committed)


def test_a_commit_reaches_the_file_only_after_its_data_is_durable(tmp_path: Path) -> None:
    # One trip through the writer per commit, two writes: BEGIN+DATA, then (after the barrier)
    # COMMIT. The file layer sees the order the disk does.
    order: list[tuple[str, int]] = []

    class Recording(OsFileLayer):
        def write(self, handle: int, data: bytes) -> None:
            order.append(("write", len(data)))
            super().write(handle, data)

        def sync(self, handle: int) -> None:
            order.append(("sync", 0))
            super().sync(handle)

    with Wal.open(tmp_path, WalOptions(durability_mode="fsync"), file_layer=Recording()) as wal:
        wal.begin(ctx(0)).commit()  # the first write preallocates the segment (zeros + sync)
        order.clear()
        txn = wal.begin(ctx(0))
        txn.data(b"x" * 100)
        txn.commit()
        assert [kind for kind, _ in order] == ["write", "sync", "write", "sync"]
        assert order[2][1] == 256 + 64  # the COMMIT alone, after the barrier


def test_a_state_machine_that_raises_poisons_the_log_without_stranding_anyone(tmp_path: Path) -> None:
    class Fragile(_Snapshots):
        def apply(self, txn: object) -> None:
            if len(self.ids) == 5:
                raise RuntimeError("journal bug")
            super().apply(txn)

    outcomes: list[str] = []
    lock = threading.Lock()
    with Wal.open(tmp_path) as wal:
        wal.attach(Fragile())

        def worker(w: int) -> None:
            for i in range(10):
                try:
                    txn = wal.begin(ctx(i))
                    txn.data(f"{w}-{i}".encode())
                    txn.commit()
                    result = "ok"
                except (RuntimeError, WalIOError) as exc:
                    result = f"{type(exc).__name__}: {exc}"
                with lock:
                    outcomes.append(result)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a committer was left waiting"
    assert len(outcomes) == 40
    # Whoever led the write that hit the bug (a committer or the writer's thread) sees it; every
    # committer after it is told the log is poisoned, and why.
    failures = [o for o in outcomes if o != "ok"]
    assert failures and all("journal bug" in o for o in failures), failures
    assert any(o.startswith("WalIOError") and "restart" in o for o in failures), failures
    assert outcomes.count("ok") >= 5
