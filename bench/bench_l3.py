"""L3 (Inductor's persistent caches under the state dir): what a warm cache saves a new worker.

Compiles one small block in a fresh process twice with `tezzeret.cache.l3_environment` pointing
at a temporary state dir, and reports each run's compile time and the FX-graph / AOTAutograd cache
hits and misses read from Inductor's counters with `tezzeret.cache.l3_counts` (what a worker
reports to `CompileCache.record_l3`). Prints one JSON line with the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from tezzeret.cache import l3_environment
from tezzeret.config import load_settings

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

_WORKER = r"""
import json, time
import torch
from torch._dynamo.utils import counters
from tezzeret.cache import l3_counts
torch.set_num_threads(1)
block = torch.nn.Sequential(torch.nn.LayerNorm(64), torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
x = torch.randn(8, 64, requires_grad=True)
compiled = torch.compile(block)
t = time.perf_counter()
compiled(x).sum().backward()
ms = (time.perf_counter() - t) * 1000
hits, misses = l3_counts({k: dict(v) for k, v in counters.items()})
print(json.dumps({"compile_ms": round(ms, 1), "l3_hits": hits, "l3_misses": misses}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | l3_environment(load_settings(state_dir=tmp))
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        runs = []
        for _ in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True,
                                 timeout=600, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps({
        "bench": "l3_inductor_cache",
        "cold": runs[0],
        "warm": runs[1],
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
