"""The CUDA path on a real GPU: compile for `cuda`, load back, train like eager, and how fast.

For each library blueprint (`--blueprints` narrows it; `--quick`: residual_mlp_256 at FAST only) and
each tier of `--tiers` (FAST and STANDARD), in this process: a compile for the `cuda` target (entries compiled and verified on the device), the
artifact loaded back through `tezzeret.loader.load` onto the device, two SGD steps of the loaded
module against eager on the same device (`tolerance_used`: the share of the dtype's CUDA tolerance
the worst tensor used; above 1 fails), and the training step's time, eager against the loaded
module, in alternating rounds. Prints one JSON line per blueprint and a `gpu_check_summary` line,
each with the machine record (GPU name, compute capability, driver, CUDA and torch versions).

On a host without CUDA it prints one line saying so and exits 0 (`make bench` runs everywhere).
A torch outside the supported range is refused unless `--untested-torch` names its minor version
(the GPU machines may carry another torch than the CPU pin).

Not yet measured here: loading in a fresh process and the adoption stall against inline
`torch.compile` on the GPU (bench/adoption.py measures that on the CPU).

Usage: python bench/gpu_check.py [--quick] [--blueprints a,b] [--tiers fast,standard] [--untested-torch]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

def _gpu_record() -> dict[str, object]:
    import torch

    from tezzeret.compile.identity import host_target

    spec = host_target("cuda", torch.cuda.current_device())
    return {"gpu": spec.device_name, "compute_capability": spec.compute_capability,
            "cuda": spec.cuda_version, "driver": spec.driver_version, "torch": torch.__version__}


def _step_ms(module, args, reps: int = 20) -> float:  # type: ignore[no-untyped-def]
    import torch

    def step() -> None:
        module.zero_grad(set_to_none=True)
        out = module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.float().sum() for o in outs if o.is_floating_point()).backward()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000.0 / reps


def check(name: str, tier: str, work: str) -> dict[str, object]:
    import torch

    from tezzeret.blueprint import build_module, example_inputs, library_blueprint
    from tezzeret.compile import compile_blueprint, verify
    from tezzeret.errors import TezzeretError
    from tezzeret.loader import load

    ir = library_blueprint(name)
    row: dict[str, object] = {"bench": "gpu_check", "blueprint": name, "tier": tier}
    out = os.path.join(work, f"{name}-{tier}")
    t = time.perf_counter()
    try:
        outcome = compile_blueprint(ir, tier, out, cache_dir=os.path.join(work, "inductor"), target="cuda")
    except TezzeretError as exc:
        return row | {"error": exc.to_dict(), "compile_s": round(time.perf_counter() - t, 1)}
    manifest = outcome.manifest
    row |= {"compile_s": round(time.perf_counter() - t, 1), "target": manifest.target,
            "entries_verified": sum(e.verified for e in manifest.entries),
            "dropped": [d.drop_reason for d in manifest.stats.dropped_entries]}
    module = load(outcome.path, trust_unsigned=True, serve="compiled", kernel_dir=os.path.join(out, "kernels"))
    torch.manual_seed(0)
    args = tuple(a.cuda() for a in example_inputs(ir))
    parity = verify.check_parity(lambda: build_module(ir).cuda(),
                                 lambda m, a: module(*a) if m is module.module else m(*a), args, grad_enabled=True)
    eager = build_module(ir).cuda()
    pairs = [(_step_ms(eager, args), _step_ms(module, args)) for _ in range(3)]
    eager_ms = statistics.median(p[0] for p in pairs)
    loaded_ms = statistics.median(p[1] for p in pairs)
    return row | {"parity_passed": parity.passed, "tolerance_used": parity.tolerance_used,
                  "max_abs_error": parity.max_abs_error, "failures": parity.failures[:3],
                  "served_compiled": module.calls_compiled > 0,
                  "eager_train_ms": round(eager_ms, 3), "loaded_train_ms": round(loaded_ms, 3),
                  "speedup_train": round(eager_ms / loaded_ms, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one blueprint (residual_mlp_256)")
    parser.add_argument("--blueprints", default="", help="comma-separated library names (default: all)")
    parser.add_argument("--tiers", default="fast,standard", help="comma-separated tiers")
    parser.add_argument("--untested-torch", action="store_true",
                        help="let compile and load run on this torch's minor version, untested")
    opts = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_check", "skipped": f"no CUDA device: torch {torch.__version__} sees none",
                          "machine": machine()}))
        return 0
    if opts.untested_torch:
        os.environ["TEZZERET_UNTESTED_TORCH"] = ".".join(torch.__version__.split(".")[:2])
    from tezzeret.blueprint import library

    names = ["residual_mlp_256"] if opts.quick else [n for n in opts.blueprints.split(",") if n] or [b.name for b in library()]
    tiers = ["fast"] if opts.quick else [t for t in opts.tiers.split(",") if t]
    record = machine() | _gpu_record()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tz-gpu-check-") as work:
        for name in names:
            for tier in tiers:
                row = check(name, tier, work)
                rows.append(row)
                print(json.dumps(row | {"machine": record}), flush=True)
    ok = [r for r in rows if r.get("parity_passed")]
    print(json.dumps({"bench": "gpu_check_summary", "blueprints": len(rows), "parity_passed": len(ok),
                      "max_tolerance_used": max((float(r["tolerance_used"]) for r in ok), default=None),
                      "median_speedup_train": statistics.median(float(r["speedup_train"]) for r in ok) if ok else None,
                      "machine": record}))
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
