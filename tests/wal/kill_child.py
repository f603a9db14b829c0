"""Kill-harness workload: commit transactions without end until SIGKILLed.

Run as `python kill_child.py DIR SEED ACKFILE`. It imports only `tezzeret.wal` (never torch).
Threads commit through `commit()` and coroutines through `commit_async()` on one WAL at the same
time; some seeds use segments small enough to rotate every few transactions, and on others a job
journal finishes jobs and takes a checkpoint every three (a checkpoint compacts the other
transactions away, so those seeds are checked through the journal). A kill lands anywhere:
mid-write, mid-rotation, mid-checkpoint, between a commit and its acknowledgement. Before each
commit it logs `TRY <txn> <digest>`, after each returns `ACK <txn>`; after each finished job
`JOB <id>`; each line one unbuffered `write`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import threading
from pathlib import Path

from tezzeret.leyline import pb
from tezzeret.wal import JobJournal, Wal, WalOptions


def main() -> None:
    directory, seed, ack_path = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    mode = "O_DSYNC" if seed % 2 == 0 else "fsync"
    segment_mb = 0.004 if seed % 3 == 0 else 1024
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def say(line: str) -> None:
        os.write(ack, (line + "\n").encode())

    wal = Wal.open(directory, WalOptions(durability_mode=mode, max_wal_size_mb=segment_mb,
                                         checkpoint_interval_compilations=3))
    with_journal = seed % 4 >= 2
    journal = JobJournal(wal) if with_journal else None
    say(f"TORCH {'torch' in sys.modules} MODE {mode} JOURNAL {with_journal}")

    def payloads_for(rng: random.Random) -> list[bytes]:
        return [rng.randbytes(rng.randint(1, 2000)) for _ in range(rng.randint(1, 3))]

    def digest(payloads: list[bytes]) -> str:
        return hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in payloads)).hexdigest()

    def thread_writer(w: int) -> None:
        rng = random.Random(seed * 100 + w)
        for i in range(1_000_000):
            txn = wal.begin(pb.ExecutionContext(model_hash=f"t{w}-{i}", operation="COMPILATION_CHECKPOINT"))
            payloads = payloads_for(rng)
            for p in payloads:
                txn.data(p)
            say(f"TRY {txn.txn_id} {digest(payloads)}")
            txn.commit()
            say(f"ACK {txn.txn_id}")

    def journal_writer() -> None:
        assert journal is not None
        for i in range(1_000_000):
            job = f"job-{i}"
            journal.enqueue(job, f"artifact-{i}", pb.PRIORITY_NORMAL, b"request")
            journal.started(job)
            journal.finished(job, pb.CompilationResult(job_id=job, success=True))  # checkpoints
            say(f"JOB {job}")

    async def task_writer(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        for i in range(1_000_000):
            txn = await wal.begin_async(pb.ExecutionContext(model_hash=f"a{w}-{i}",
                                                            operation="COMPILATION_CHECKPOINT"))
            payloads = payloads_for(rng)
            for p in payloads:
                await txn.data_async(p)
            say(f"TRY {txn.txn_id} {digest(payloads)}")
            await txn.commit_async()
            say(f"ACK {txn.txn_id}")

    writers: list = [(thread_writer, (0,)), (thread_writer, (1,))]  # type: ignore[type-arg]
    if with_journal:
        writers.append((journal_writer, ()))
    for target, args in writers:
        threading.Thread(target=target, args=args, daemon=True).start()

    async def tasks() -> None:
        await asyncio.gather(*(task_writer(w) for w in range(3)))

    asyncio.run(tasks())


if __name__ == "__main__":
    main()
