"""Fresh-process parity of compiled artifacts: run as a subprocess by the compile tests.

argv: a kernel dir, then artifact paths. For every training entry of every artifact: verify the
file (signature-free open, digests, compatibility), deserialise the entry with its bundled native
code re-homed under the kernel dir, and run the two-step SGD comparison against eager (losses,
every gradient, final parameters and buffers). Prints one JSON line: per artifact, per entry, the
parity result; the files each entry's re-homed directory holds; and torch's compile counters (a
loaded entry must compile nothing).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from tezzeret.blueprint import build_module, example_inputs
from tezzeret.artifact import payload
from tezzeret.compile import precompile, verify
from tezzeret.loader import open_artifact

kernel_dir = Path(sys.argv[1])
report: dict[str, object] = {"artifacts": {}}
for path in sys.argv[2:]:
    verified = open_artifact(path, trust_unsigned=True)  # compile output; the forge signs
    ir = verified.manifest.blueprint
    entries: dict[str, object] = {}
    for record in verified.manifest.entries:
        name = f"entry/{record.key}"
        if name not in verified.payloads:
            entries[record.key] = {"payload": False}
            continue
        before = set(os.listdir(kernel_dir)) if kernel_dir.exists() else set()
        entry = payload.load_entry(verified.payloads[name], kernel_dir=kernel_dir)
        homes = sorted(set(os.listdir(kernel_dir)) - before)
        torch.manual_seed(0)  # the inputs the compiler verified with
        args = tuple(example_inputs(ir, int(record.inputs[0].shape[0])))
        parity = verify.check_parity(lambda: build_module(ir), verify.entry_runner(entry), args,
                                     grad_enabled=record.grad_enabled)
        entries[record.key] = {
            "payload": True,
            "passed": parity.passed,
            "tolerance_used": parity.tolerance_used,
            "max_abs_error": parity.max_abs_error,
            "failures": parity.failures[:3],
            "homes": {h: sorted(os.listdir(kernel_dir / h)) for h in homes},
        }
    report["artifacts"][path] = entries  # type: ignore[index]
report["counters"] = precompile.compile_counters()
print(json.dumps(report))
