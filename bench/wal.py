"""WAL benchmark: the disk's sync ceiling, commit throughput and latency, recovery time.

Prints one JSON line. In one run, on one disk (`--dir`, default a fresh directory under the
current directory so it is the repository's disk):
- raw_fsync_per_s: one 256-byte append + fsync per record, the ceiling the issue defines;
- raw_overwrite_fsync_per_s: the same written over zeros already on disk, which is how the WAL
  writes (into preallocated segments), so wal_1w_vs_overwrite_ceiling is the stricter ratio;
- syncs_per_txn: barriers one transaction needs (measured, not assumed);
- wal_1w_per_s, commit_p50_ms, commit_p99_ms: one writer, BEGIN + one DATA + COMMIT each;
- wal_8w_per_s (and its p50/p99): eight threads committing at once, sharing syncs;
- async_1w_per_s, async_8w_per_s (and p50s): the same through the coroutine API
  (`begin_async`/`commit_async`), one and eight tasks on one event loop: what the forge uses;
  the five phases run interleaved in short slices (`--rounds`) so disk drift hits them alike;
- recovery_10k_s, recovery_100k_s: `Wal.open` (full validation) of logs with that many committed
  transactions, written directly in the record format so building them takes seconds, not minutes.
Also records the machine: CPU model, cores, torch version (not imported), filesystem.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tezzeret.leyline import codec, pb
from tezzeret.wal import Wal, WalOptions
from tezzeret.wal.format import EntryType, pack_record
from tezzeret.wal.merkle import merkle_root
from tezzeret.wal.reader import segment_name

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script


class Phase:
    """Totals of one measured phase, accumulated over interleaved slices."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.syncs = 0
        self.latencies: list[float] = []

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct_ms(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000 if lat else 0.0


_OVERWRITE_SPAN = 16 << 20


def raw_overwrite_slice(fd: int, seconds: float, phase: Phase) -> None:
    """The same record and fsync, written over zeros already on disk (as the WAL now writes)."""
    record = b"\1" * 256
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.pwrite(fd, record, (phase.count * 256) % _OVERWRITE_SPAN)
        os.fsync(fd)
        phase.count += 1
    phase.seconds += time.perf_counter() - start


def raw_slice(fd: int, seconds: float, phase: Phase) -> None:
    record = b"\0" * 256
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.write(fd, record)
        os.fsync(fd)
        phase.count += 1
    phase.seconds += time.perf_counter() - start


def _ctx() -> pb.ExecutionContext:
    # Stamped with the schema version as the forge's and the journal's contexts are; one without
    # it costs the WAL a copy of the message to stamp it.
    return pb.ExecutionContext(schema_version=codec.SCHEMA_VERSION, model_hash="m" * 64,
                               toolchain_version="bench", operation="BENCH")


def wal_slice(wal: Wal, writers: int, seconds: float, phase: Phase) -> None:
    lock = threading.Lock()
    syncs0 = wal.syncs
    stop = time.perf_counter() + seconds

    def worker() -> None:
        mine = []
        payload = os.urandom(256)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            txn = wal.begin(_ctx())
            txn.data(payload)
            txn.commit()
            mine.append(time.perf_counter() - t0)
        with lock:
            phase.latencies.extend(mine)
            phase.count += len(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds += time.perf_counter() - start
    phase.syncs += wal.syncs - syncs0


def async_slice(wal: Wal, writers: int, seconds: float, phase: Phase) -> None:
    syncs0 = wal.syncs
    payload = os.urandom(256)

    async def worker(stop: float) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            txn = await wal.begin_async(_ctx())
            await txn.data_async(payload)
            await txn.commit_async()
            phase.latencies.append(time.perf_counter() - t0)
            phase.count += 1

    async def run() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(worker(stop) for _ in range(writers)))

    start = time.perf_counter()
    asyncio.run(run())
    phase.seconds += time.perf_counter() - start
    phase.syncs += wal.syncs - syncs0


def throughput(directory: Path, mode: str, seconds: float, rounds: int) -> tuple[Phase, ...]:
    """Raw (append, and overwrite), 1-writer and 8-writer phases (threads, then coroutines)
    interleaved in short slices, so a shared disk whose latency drifts affects all of them alike."""
    raw, one, eight, async_one, async_eight = Phase(), Phase(), Phase(), Phase(), Phase()
    overwrite = Phase()
    directory.mkdir(parents=True)
    raw_path = directory / "raw.bin"
    fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    zeros_path = directory / "zeros.bin"
    zfd = os.open(zeros_path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(zfd, bytes(_OVERWRITE_SPAN))
    os.fsync(zfd)
    try:
        with Wal.open(directory / "wal", WalOptions(durability_mode=mode)) as wal:
            for _ in range(rounds):
                raw_slice(fd, seconds / rounds, raw)
                raw_overwrite_slice(zfd, seconds / rounds, overwrite)
                wal_slice(wal, 1, seconds / rounds, one)
                wal_slice(wal, 8, seconds / rounds, eight)
                async_slice(wal, 1, seconds / rounds, async_one)
                async_slice(wal, 8, seconds / rounds, async_eight)
    finally:
        os.close(fd)
        os.close(zfd)
        raw_path.unlink()
        zeros_path.unlink()
    return raw, overwrite, one, eight, async_one, async_eight


def build_log(directory: Path, n: int) -> None:
    """`n` committed transactions (BEGIN + one 256-byte DATA + COMMIT) written straight to disk."""
    directory.mkdir(parents=True)
    ctx = codec.encode(_ctx())
    ctx_sha = hashlib.sha256(ctx).digest()
    payload = os.urandom(256)
    sha = hashlib.sha256(payload).digest()
    root = merkle_root(ctx, [sha]).encode()
    root_sha = hashlib.sha256(root).digest()
    offset = 0
    seq = 1
    with open(directory / segment_name(1), "wb") as out:
        for _ in range(n):
            tid = uuid.uuid4().bytes
            for etype, body, digest in ((EntryType.BEGIN, ctx, ctx_sha), (EntryType.DATA, payload, sha),
                                        (EntryType.COMMIT, root, root_sha)):
                out.write(pack_record(txn_id=tid, sequence=seq, epoch=0, timestamp_ns=time.time_ns(),
                                      entry_type=etype, payload=body, payload_sha256=digest,
                                      offset=offset))
                offset += 256 + len(body)
                seq += 1
        out.flush()
        os.fsync(out.fileno())


def recovery(directory: Path, n: int) -> tuple[float, float]:
    build_log(directory, n)
    # Drop the log from the page cache where we may, so recovery reads the disk.
    fd = os.open(directory / segment_name(1), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    start = time.perf_counter()
    cpu = time.process_time()
    wal = Wal.open(directory, WalOptions(recovery_validation="warn"))
    cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - start
    assert wal.recovery.committed == n and wal.recovery.outcome == "clean", wal.recovery.outcome
    wal.close()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to put the test logs")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each timed phase")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved slices per phase")
    parser.add_argument("--mode", choices=("O_DSYNC", "fsync"), default="O_DSYNC")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix=".bench-wal-", dir=args.dir))
    try:
        raw, overwrite, one, eight, async_one, async_eight = throughput(root / "t", args.mode, args.seconds, args.rounds)
        rec10k = recovery(root / "r10k", 10_000)
        rec100k = recovery(root / "r100k", 100_000)
        syncs = round(one.syncs / max(1, one.count), 3)
        result = {
            "bench": "wal",
            "mode": args.mode,
            "raw_fsync_per_s": round(raw.per_s, 1),
            "syncs_per_txn": syncs,
            "wal_1w_per_s": round(one.per_s, 1),
            "wal_1w_vs_ceiling": round(one.per_s / (raw.per_s / max(syncs, 1e-9)), 3),
            # The WAL overwrites preallocated zeros; against that cheaper barrier, for honesty.
            "raw_overwrite_fsync_per_s": round(overwrite.per_s, 1),
            "wal_1w_vs_overwrite_ceiling": round(one.per_s / (overwrite.per_s / max(syncs, 1e-9)), 3),
            "wal_8w_per_s": round(eight.per_s, 1),
            "wal_8w_vs_1w": round(eight.per_s / one.per_s, 2),
            "wal_8w_syncs_per_txn": round(eight.syncs / max(1, eight.count), 3),
            "commit_p50_ms": round(one.pct_ms(0.5), 3),
            "commit_p99_ms": round(one.pct_ms(0.99), 3),
            "commit_8w_p50_ms": round(eight.pct_ms(0.5), 3),
            "commit_8w_p99_ms": round(eight.pct_ms(0.99), 3),
            "async_1w_per_s": round(async_one.per_s, 1),
            "async_8w_per_s": round(async_eight.per_s, 1),
            "async_8w_vs_1w": round(async_eight.per_s / async_one.per_s, 2),
            "async_8w_syncs_per_txn": round(async_eight.syncs / max(1, async_eight.count), 3),
            "async_commit_p50_ms": round(async_one.pct_ms(0.5), 3),
            "async_commit_8w_p50_ms": round(async_eight.pct_ms(0.5), 3),
            "recovery_10k_s": round(rec10k[0], 3),
            "recovery_100k_s": round(rec100k[0], 3),
            # CPU seconds of the same recoveries: what wall time would be on an idle core.
            "recovery_10k_cpu_s": round(rec10k[1], 3),
            "recovery_100k_cpu_s": round(rec100k[1], 3),
            "machine": machine(root),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
