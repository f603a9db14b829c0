"""The CUDA path on a real GPU: compile for `cuda`, load back in a fresh process, train like eager,
how fast, and what adopting a blueprint stalls a training loop.

For each library blueprint (`--blueprints` narrows it; `--quick`: residual_mlp_256 at FAST only) and
each tier of `--tiers` (FAST and STANDARD): a compile in this process for the `cuda` target (entries
compiled and verified on the device, Triton kernels bundled); then, in a fresh process with an empty
Inductor cache, the artifact loaded through `tezzeret.loader.load` onto the device, two SGD steps of
the loaded module against eager on the same device (`tolerance_used`: the share of the dtype's CUDA
tolerance the worst tensor used; above 1 fails), and the training step's time, eager against the
loaded module, in alternating rounds. Then `bench/adoption.py --device cuda` for one blueprint: the
stall from "module built" to "first training step done" for a Tezzeret artifact against inline
`torch.compile` cold. Prints one JSON line per blueprint and tier, an `adoption` line, and a
`gpu_check_summary` line against the targets (every blueprint verified; median served training
speed-up >= 1.3x; adoption <= 0.1 s against inline cold >= 20 s), each with the machine record (GPU
name, compute capability, driver, CUDA and torch versions).

On a host without CUDA it prints one line saying so and exits 0 (`make bench` runs everywhere);
`--device cpu` runs the same steps on the CPU instead (a dry run of this script, not a GPU result).
A torch outside the supported range is refused unless `--untested-torch` names its minor version
(the GPU machines may carry another torch than the CPU pin).

Usage: python bench/gpu_check.py [--quick] [--blueprints a,b] [--tiers fast,standard]
                                 [--untested-torch] [--device cuda|cpu] [--adoption-blueprint NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

HERE = Path(__file__).resolve().parent
TARGETS = {"median_speedup_train": 1.3, "adoption_s": 0.1, "inline_cold_s": 20.0}


def _device_record(device: str) -> dict[str, object]:
    import torch

    if device != "cuda":
        return {"device": device, "torch": torch.__version__}
    from tezzeret.compile.identity import host_target

    spec = host_target("cuda", torch.cuda.current_device())
    return {"gpu": spec.device_name, "compute_capability": spec.compute_capability,
            "cuda": spec.cuda_version, "driver": spec.driver_version, "torch": torch.__version__}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _step_ms(module, args, device: str, reps: int = 20) -> float:  # type: ignore[no-untyped-def]
    def step() -> None:
        module.zero_grad(set_to_none=True)
        out = module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.float().sum() for o in outs if o.is_floating_point()).backward()

    for _ in range(3):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        step()
    _sync(device)
    return (time.perf_counter() - t) * 1000.0 / reps


def _child_load(path: str, name: str, device: str) -> None:
    """In a fresh process: load the artifact onto `device`, two SGD steps against eager, speed."""
    import torch

    from tezzeret.blueprint import build_module, example_inputs, library_blueprint
    from tezzeret.compile import verify
    from tezzeret.loader import load

    ir = library_blueprint(name)
    t = time.perf_counter()
    module = load(path, trust_unsigned=True, serve="compiled")
    load_s = time.perf_counter() - t
    torch.manual_seed(0)
    args = tuple(a.to(device) for a in example_inputs(ir))
    # check_parity builds eager first, then the candidate, and copies eager's weights into it: the
    # candidate is the loaded module's own, so every step runs through the artifact's entries.
    made = iter((build_module(ir).to(device), module.module))
    before = module.calls_compiled
    parity = verify.check_parity(lambda: next(made), lambda _m, a: module(*a), args, grad_enabled=True)
    through_entries = module.calls_compiled - before
    eager = build_module(ir).to(device)
    pairs = [(_step_ms(eager, args, device), _step_ms(module, args, device)) for _ in range(3)]
    eager_ms = statistics.median(p[0] for p in pairs)
    loaded_ms = statistics.median(p[1] for p in pairs)
    print(json.dumps({"load_s": round(load_s, 3), "parity_passed": parity.passed,
                      "tolerance_used": parity.tolerance_used, "max_abs_error": parity.max_abs_error,
                      "failures": parity.failures[:3], "parity_calls_compiled": through_entries,
                      "served_compiled": module.calls_compiled > 0,
                      "module_device": str(next(module.module.parameters()).device),
                      "eager_train_ms": round(eager_ms, 3), "loaded_train_ms": round(loaded_ms, 3),
                      "speedup_train": round(eager_ms / loaded_ms, 3)}))


def _fresh(args: list[str], cache: Path) -> dict[str, object]:
    """Run this script (or another bench) in a fresh process with an empty Inductor cache."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
    return dict(json.loads(lines[-1]))


def check(name: str, tier: str, work: str, device: str) -> dict[str, object]:
    from tezzeret.blueprint import library_blueprint
    from tezzeret.compile import compile_blueprint
    from tezzeret.errors import TezzeretError

    ir = library_blueprint(name)
    row: dict[str, object] = {"bench": "gpu_check", "blueprint": name, "tier": tier}
    out = os.path.join(work, f"{name}-{tier}")
    t = time.perf_counter()
    try:
        outcome = compile_blueprint(ir, tier, out, cache_dir=os.path.join(work, "inductor"), target=device)
    except TezzeretError as exc:
        return row | {"error": exc.to_dict(), "compile_s": round(time.perf_counter() - t, 1)}
    manifest = outcome.manifest
    row |= {"compile_s": round(time.perf_counter() - t, 1), "target": manifest.target,
            "entries_verified": sum(e.verified for e in manifest.entries),
            "dropped": [d.drop_reason for d in manifest.stats.dropped_entries]}
    loaded = _fresh([__file__, "--child-load", str(outcome.path), "--blueprints", name, "--device", device],
                    Path(work) / f"consumer-{name}-{tier}")
    return row | loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one blueprint (residual_mlp_256) at FAST")
    parser.add_argument("--blueprints", default="", help="comma-separated library names (default: all)")
    parser.add_argument("--tiers", default="fast,standard", help="comma-separated tiers")
    parser.add_argument("--untested-torch", action="store_true",
                        help="let compile and load run on this torch's minor version, untested")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: a dry run of the same steps on the CPU")
    parser.add_argument("--adoption-blueprint", default="residual_mlp_256", help="'' skips the adoption run")
    parser.add_argument("--child-load", default="", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    import torch

    if opts.untested_torch:
        os.environ["TEZZERET_UNTESTED_TORCH"] = ".".join(torch.__version__.split(".")[:2])
    if opts.child_load:
        _child_load(opts.child_load, opts.blueprints, opts.device)
        return 0
    if opts.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_check", "skipped": f"no CUDA device: torch {torch.__version__} sees none",
                          "machine": machine()}))
        return 0
    from tezzeret.blueprint import library

    names = ["residual_mlp_256"] if opts.quick else [n for n in opts.blueprints.split(",") if n] or [b.name for b in library()]
    tiers = ["fast"] if opts.quick else [t for t in opts.tiers.split(",") if t]
    record = machine() | _device_record(opts.device)
    rows = []
    adoption: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tz-gpu-check-") as work:
        for name in names:
            for tier in tiers:
                row = check(name, tier, work, opts.device)
                rows.append(row)
                print(json.dumps(row | {"machine": record}), flush=True)
        if opts.adoption_blueprint:
            adoption = _fresh([str(HERE / "adoption.py"), "--blueprint", opts.adoption_blueprint, "--device", opts.device],
                              Path(work) / "adoption")
            print(json.dumps({"bench": "adoption"} | adoption | {"machine": record}), flush=True)
    ok = [r for r in rows if r.get("parity_passed")]
    median = statistics.median(float(r["speedup_train"]) for r in ok) if ok else None  # type: ignore[arg-type]
    summary = {
        "bench": "gpu_check_summary", "device": opts.device, "blueprints": len(rows), "parity_passed": len(ok),
        "max_tolerance_used": max((float(r["tolerance_used"]) for r in ok), default=None),  # type: ignore[arg-type]
        "median_speedup_train": median,
        "served_compiled": sum(1 for r in ok if r.get("served_compiled")),
        "adoption_s": adoption.get("tezzeret_s"), "inline_cold_s": adoption.get("inline_cold_s"),
        "targets": TARGETS,
        "targets_met": {
            "all_verified": len(ok) == len(rows),
            "median_speedup_train": median is not None and median >= TARGETS["median_speedup_train"],
            "adoption": (adoption.get("tezzeret_s") is not None
                         and float(adoption["tezzeret_s"]) <= TARGETS["adoption_s"]  # type: ignore[arg-type]
                         and float(adoption["inline_cold_s"]) >= TARGETS["inline_cold_s"]),  # type: ignore[arg-type]
        },
        "machine": record,
    }
    print(json.dumps(summary))
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
