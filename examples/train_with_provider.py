"""A training loop that grafts a blueprint and never waits for a compiler.

The loop asks a `KernelProvider` for the blueprint's module and starts training at once, eager.
Meanwhile a separate process (`tezzeret compile`, standing in for the forge) builds a FAST
artifact; when it lands, the provider verifies and loads it in a background thread and the same
module (same parameters, same optimizer) switches to compiled entries between two steps.

Usage: python examples/train_with_provider.py [--blueprint residual_mlp_256] [--after 50]
(trains until the compiled entries have served `--after` steps, or `--max-seconds`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tezzeret.blueprint import digest, example_inputs, example_training_step, library_blueprint
from tezzeret.loader import KernelProvider


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprint", default="residual_mlp_256")
    parser.add_argument("--after", type=int, default=50, help="compiled steps to run once switched")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    ns = parser.parse_args()

    ir = library_blueprint(ns.blueprint)
    key = digest(ir)
    out_dir = Path(tempfile.mkdtemp(prefix="tz-example-"))
    source = out_dir / "blueprint.json"
    from tezzeret.leyline import codec

    source.write_text(codec.to_json(ir))
    # The forge would do this in its sandbox; here a plain subprocess keeps the compiler out of
    # the training process.
    # Compiled entries are guarded on torch's thread count: compile with the loop's own.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    report = out_dir / "compile.json"
    with report.open("w") as sink:
        forge = subprocess.Popen(
            [sys.executable, "-m", "tezzeret.cli", "compile", str(source), "-s", "fast", "-o", str(out_dir), "--json"],
            stdout=sink, stderr=subprocess.DEVNULL, env=env,
        )
    with KernelProvider(serve="compiled") as provider:
        module = provider.get(ir)
        assert module is not None
        opt = torch.optim.SGD(module.parameters(), lr=0.01)
        inputs = example_inputs(ir)
        offered = False
        started = time.perf_counter()
        step = -1
        while module.calls_compiled < ns.after and time.perf_counter() - started < ns.max_seconds:
            step += 1
            if not offered and forge.poll() is not None:
                doc = json.loads(report.read_text() or "{}")
                if "path" not in doc:
                    print(f"no artifact ({doc.get('error')}); the loop simply stays eager")
                    break
                provider.offer(key, doc["path"])  # returns at once
                offered = True
            if offered and provider.state(key).mode == "refused":
                print(f"artifact refused ({provider.state(key).reason}); staying eager")
                break
            t = time.perf_counter()
            loss = example_training_step(module, opt, inputs)
            if step % 50 == 0 or (module.compiled and module.calls_compiled == 1):
                print(
                    f"step {step:4d}  t={time.perf_counter() - started:6.2f}s  step_ms={1000 * (time.perf_counter() - t):6.2f}"
                    f"  loss={float(loss.detach()):.5f}  serving={'compiled' if module.compiled else 'eager'}"
                    f"  provider={provider.state(key).mode}"
                )
            time.sleep(0.02)  # the rest of a real training step (data loading, other layers)
        print(f"calls: compiled={module.calls_compiled} eager={module.calls_eager}")
    forge.wait()


if __name__ == "__main__":
    main()
