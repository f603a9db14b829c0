"""What a busy second core costs a one-thread training loop, and what a cgroup CPU cap gives back.

Owns: one benchmark behind the sandbox's defaults (sandbox/throttle.py). The training loop of
`disruption.py` runs pinned to CPU 0, alone, then beside a loop pinned to CPU 1 under SCHED_IDLE:
a Python spin loop (ALU only), a loop summing an L2-sized array, a loop summing a 64 MB array
(memory-bound); then the memory-bound loop inside a cgroup capped at `--quota` cores in periods
of `--period-ms` (skipped where no cgroup can be made). Prints one JSON line of step p50/p99 per
case and their ratios to alone. It must never assert a speed (it measures).

Run: `.venv/bin/python bench/core_interference.py [--steps 300] [--quota 0.25] [--period-ms 100]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from disruption import Trainer, pct  # noqa: E402
from machine_info import machine  # noqa: E402

from tezzeret.sandbox import throttle  # noqa: E402

LOOPS = {
    "spin": "while True: pass",
    "l2_sum": "import numpy as np\na = np.ones(100_000)\nwhile True: a.sum()",
    "memory_sum": "import numpy as np\na = np.ones(8_000_000)\nwhile True: a.sum()",
}


def neighbour(code: str, procs_files: list[Path] | None = None) -> subprocess.Popen[bytes]:
    prelude = "import os\nos.sched_setaffinity(0, {1})\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"

    def join() -> None:
        if procs_files:
            throttle.join(procs_files)

    return subprocess.Popen([sys.executable, "-c", prelude + code], preexec_fn=join)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quota", type=float, default=0.25)
    parser.add_argument("--period-ms", type=int, default=100)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs at least 2 CPUs")
    os.sched_setaffinity(0, {0})
    trainer = Trainer(1)
    trainer.run(steps=30)

    def measure() -> tuple[float, float]:
        times = trainer.run(steps=args.steps)
        return statistics.median(times), pct(times, 99)

    cases: dict[str, tuple[float, float]] = {"alone": measure()}
    for name, code in LOOPS.items():
        proc = neighbour(code)
        try:
            time.sleep(1)
            cases[name] = measure()
        finally:
            proc.kill()
            proc.wait()
    group, why = throttle.WorkerCgroup.create(f"tezzeret-bench-{uuid.uuid4().hex[:8]}", args.period_ms * 1000)
    if group is not None:
        try:
            group.set_quota(args.quota)
            proc = neighbour(LOOPS["memory_sum"], group.procs_files())
            try:
                time.sleep(1)
                cases["memory_sum_capped"] = measure()
            finally:
                proc.kill()
                proc.wait()
        finally:
            group.remove()
    cases["alone_after"] = measure()
    base_p50 = statistics.mean([cases["alone"][0], cases["alone_after"][0]])
    base_p99 = statistics.mean([cases["alone"][1], cases["alone_after"][1]])
    line = {
        "bench": "core_interference",
        "cases": {
            name: {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                   "p50_ratio": round(p50 / base_p50, 3), "p99_ratio": round(p99 / base_p99, 3)}
            for name, (p50, p99) in cases.items()
        },
        "cap": {"quota_cores": args.quota, "period_ms": args.period_ms} if group else {"unavailable": why},
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(line, sort_keys=True))


if __name__ == "__main__":
    main()
