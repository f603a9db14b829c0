"""A training process that adopts an artifact: run as a fresh subprocess by the loader tests.

argv: artifact path, then optionally the batch of each training step (default 8,4,8,4). Prints one
JSON line: load time, losses (compiled vs eager), compile counters,
and what the Inductor cache dir holds afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

from tezzeret.blueprint import build_module, example_inputs  # noqa: E402
from tezzeret.compile.precompile import compile_counters  # noqa: E402
from tezzeret.loader import load  # noqa: E402

imported = time.perf_counter()
module = load(sys.argv[1], serve="compiled", trust_unsigned=True)
loaded = time.perf_counter()
ir = module.module  # the inner blueprint module
from tezzeret.artifact.file import read_manifest  # noqa: E402

manifest, _, _ = read_manifest(sys.argv[1])
eager = build_module(manifest.blueprint)
opt_c = torch.optim.SGD(module.parameters(), lr=0.05)
opt_e = torch.optim.SGD(eager.parameters(), lr=0.05)
losses_c: list[float] = []
losses_e: list[float] = []
first_step = 0.0
batches = [int(b) for b in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8, 4, 8, 4]
for step, batch in enumerate(batches):
    (x,) = example_inputs(manifest.blueprint, batch)
    t = time.perf_counter()
    for net, opt, out in ((module, opt_c, losses_c), (eager, opt_e, losses_e)):
        opt.zero_grad()
        loss = net(x).square().mean()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
        if step == 0 and net is module:
            first_step = time.perf_counter() - t
max_param_diff = max(
    float((a - b).abs().max()) for a, b in zip(module.module.parameters(), eager.parameters(), strict=True)
)
cache = os.environ["TORCHINDUCTOR_CACHE_DIR"]
print(
    json.dumps(
        {
            "import_s": imported - t0,
            "load_s": loaded - imported,
            "first_step_s": first_step,
            "losses_compiled": losses_c,
            "losses_eager": losses_e,
            "max_param_diff": max_param_diff,
            "calls_compiled": module.calls_compiled,
            "calls_eager": module.calls_eager,
            "counters": compile_counters(),
            "cache_dir_entries": sorted(os.listdir(cache)) if os.path.exists(cache) else [],
            "same_params": all(p is q for p, q in zip(module.parameters(), module.module.parameters(), strict=True)),
        }
    )
)
