"""Crash-matrix workload: commit transactions and die at one named crash point.

Run as `python crash_child.py DIR POINT SEED ACKFILE`. It imports only `tezzeret.wal` (never
torch). Before each commit it logs `TRY <txn> <digest>`, after each commit returns `ACK <txn>`,
each line written with one unbuffered `write` so the parent sees exactly what was acknowledged.
At the POINT's k-th occurrence (k from SEED) it dies: `os._exit` with the page cache kept, a
simulated power loss (unsynced bytes lost except a random prefix), a torn write then power loss,
or an NVMe namespace teardown (unsynced bytes lost, EIO from then on).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
from pathlib import Path

from tezzeret.leyline import pb
from tezzeret.wal import Wal, WalIOError, WalOptions
from tezzeret.wal.faults import FaultyFileLayer

CRASHED = 77
TORN_DOWN = 78


def main() -> None:
    directory, point, seed, ack_path = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = random.Random(seed)
    mode = "O_DSYNC" if seed % 2 == 0 else "fsync"
    threads = 1 + (seed // 2) % 2
    layer = FaultyFileLayer(seed, keep_unsynced_prefix=rng.random() < 0.5)
    power_loss = rng.random() < 0.5
    n_txns = rng.randint(4, 8)
    trigger_at = rng.randint(1, n_txns)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lock = threading.Lock()
    seen = {"n": 0}

    def say(line: str) -> None:
        os.write(ack, (line + "\n").encode())

    say(f"TORCH {'torch' in sys.modules} MODE {mode} THREADS {threads}")

    def hook(name: str) -> None:
        if name != point:
            return
        with lock:
            seen["n"] += 1
            if seen["n"] != trigger_at:
                return
        say(f"CRASH {name}")
        if name.startswith("during_"):
            layer.tear_next_write_and_exit()
        elif name == "nvme_namespace_teardown_mid_commit":
            layer.teardown_on_next_write()
        elif power_loss:
            layer.power_loss()
        else:
            os._exit(CRASHED)

    # A third of the seeds use ~4 KiB segments, so crashes also land around rotations.
    segment_mb = 0.004 if seed % 3 == 0 else 1024
    wal = Wal.open(directory, WalOptions(durability_mode=mode, max_wal_size_mb=segment_mb),
                   file_layer=layer, crash_hook=hook)
    failures = {"n": 0}

    def worker(w: int) -> None:
        local = random.Random(seed * 100 + w)
        for i in range(n_txns):
            ctx = pb.ExecutionContext(model_hash=f"{seed}-{w}-{i}", operation="COMPILATION_CHECKPOINT")
            payloads = [local.randbytes(local.randint(1, 3000)) for _ in range(local.randint(1, 3))]
            try:
                txn = wal.begin(ctx, durable=local.random() < 0.3)
                for j, payload in enumerate(payloads):
                    txn.data(payload, kind="artifact" if j == 0 else "compilation")
                if len(payloads) == 1:
                    payloads.append(b"meta")
                    txn.data(b"meta", kind="compilation")
                d = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in payloads)).hexdigest()
                say(f"TRY {txn.txn_id} {d}")
                txn.commit()
            except WalIOError:
                failures["n"] += 1
                continue
            say(f"ACK {txn.txn_id}")

    workers = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    say(f"END failures={failures['n']}")
    os._exit(TORN_DOWN if failures["n"] else 0)


if __name__ == "__main__":
    main()
