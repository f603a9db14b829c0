"""The two workarounds for torch 2.13's wrong conv gradients through precompile + AOTI, side by side.

For each blueprint (by default the library's five conv2d blueprints and the conv patterns under
tests/compile/blueprints/) and each variant it compiles the FAST tier's training entry at the
declared batch in a fresh process, then loads the serialised bytes in another fresh process with
an empty Inductor cache and kernel dir, and prints one JSON line: compile_s, entry_bytes, the
two-step SGD parity against eager (passed, max_rel_error, max_abs_error, first failures) and the
forward+backward time of eager and of the loaded entry (ms, medians of alternating rounds). After
each blueprint's variants, one more fresh process loads all of them and times eager and every
variant's forward+backward in alternating rounds (`conv_layout_speed` line): the comparison that
holds up on a shared machine.
Variants: `none` (the FAST options as they were), `A` (Inductor option `layout_optimization: False`),
`B` (FAST options, the forward's output strides reported to AOTAutograd; precompile.py). Records
the machine on every line.

Usage: python bench/conv_layout.py [--blueprints conv_bn_relu_32x64,tests/compile/blueprints/conv_bn.json]
                                   [--variants none,A,B] [--threads 1]
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

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_CONV = [
    "bottleneck_residual_128",
    "conv_bn_relu_32x64",
    "conv_pool_head_32",
    "depthwise_separable_64",
    "spatial_attention_64",
]
PATTERNS = ["conv_bn", "conv_gelu", "grouped_conv", "depthwise_strided", "conv1d"]


def _ir(name: str):  # type: ignore[no-untyped-def]
    from tezzeret.blueprint import library_blueprint, load_blueprint

    return load_blueprint(Path(name)) if name.endswith(".json") else library_blueprint(name)


def _args(ir):  # type: ignore[no-untyped-def]
    import torch

    from tezzeret.blueprint import example_inputs

    torch.manual_seed(0)
    return tuple(example_inputs(ir))


def _child_produce(name: str, variant: str, out: str) -> None:
    from tezzeret.blueprint import build_module
    from tezzeret.compile import precompile
    from tezzeret.compile.tiers import FAST

    ir = _ir(name)
    options = dict(FAST.inductor_options)
    options.pop("layout_optimization", None)  # `none` and `B` compile with Inductor's default
    if variant == "A":
        options["layout_optimization"] = False
    t = time.perf_counter()
    entry = precompile.compile_entry(
        build_module(ir), _args(ir), grad_enabled=True, options=options, report_forward_strides=variant == "B"
    )
    data = entry.serialize()
    compile_s = time.perf_counter() - t
    Path(out).write_bytes(data)
    print(json.dumps({"compile_s": round(compile_s, 2), "entry_bytes": len(data)}))


def _child_check(name: str, path: str, kernel_dir: str) -> None:
    from tezzeret.artifact import payload
    from tezzeret.blueprint import build_module
    from tezzeret.compile import precompile, verify

    ir = _ir(name)
    args = _args(ir)
    t = time.perf_counter()
    entry = payload.load_entry(Path(path).read_bytes(), kernel_dir=Path(kernel_dir))
    load_s = time.perf_counter() - t
    run = verify.entry_runner(entry)
    parity = verify.check_parity(lambda: build_module(ir), run, args, grad_enabled=True)
    speed = verify.measure_speed(lambda: build_module(ir), run, args, grad_enabled=True, budget_s=2.0)
    print(json.dumps({
        "load_s": round(load_s, 3),
        "passed": parity.passed,
        "max_rel_error": float(f"{parity.max_rel_error:.3g}"),
        "max_abs_error": float(f"{parity.max_abs_error:.3g}"),
        "tolerance_used": float(f"{parity.tolerance_used:.3g}"),
        "failures": parity.failures[:3],
        "eager_train_ms": round(speed.eager_train_ms, 3),
        "compiled_train_ms": round(speed.compiled_train_ms, 3),
        "speedup_train": round(speed.speedup_train, 3),
        "speedup_fwd": round(speed.speedup_fwd, 3),
        "compiled_nothing": not any(k.startswith(("inductor.", "aot_autograd.")) for k in precompile.compile_counters()),
    }))


def _child_speed(name: str, kernel_dir: str, *variant_paths: str) -> None:
    """Eager and every variant's loaded entry in one process, timed in alternating rounds (the
    machine is shared: load that comes and goes hits every contender alike)."""
    import statistics

    from tezzeret.artifact import payload
    from tezzeret.blueprint import build_module
    from tezzeret.compile import verify

    ir = _ir(name)
    args = _args(ir)
    runners: dict[str, verify.Runner] = {"eager": verify.eager_runner}
    for item in variant_paths:
        variant, path = item.split("=", 1)
        runners[variant] = verify.entry_runner(
            payload.load_entry(Path(path).read_bytes(), kernel_dir=Path(kernel_dir) / variant))
    base = build_module(ir)
    modules = {}
    for key in runners:
        modules[key] = build_module(ir)
        modules[key].load_state_dict(base.state_dict())

    def step(key: str) -> None:
        module = modules[key]
        for p in module.parameters():
            p.grad = None
        verify._loss(verify._outputs(runners[key](module, args)), 7).backward()

    for key in runners:
        for _ in range(3):
            step(key)
    samples: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(int(os.environ.get("TZ_SPEED_ROUNDS", "30"))):
        for key in runners:
            t = time.perf_counter()
            for _ in range(3):
                step(key)
            samples[key].append((time.perf_counter() - t) * 1000.0 / 3)
    print(json.dumps({f"{key}_train_ms": round(statistics.median(v), 3) for key, v in samples.items()}))


def _run(args: list[str], cache: Path, threads: int) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    env.update({"TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": str(threads)})
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    default = LIBRARY_CONV + [f"tests/compile/blueprints/{p}.json" for p in PATTERNS]
    parser.add_argument("--blueprints", default=",".join(default))
    parser.add_argument("--variants", default="none,A,B")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs="*")
    ns = parser.parse_args()
    if ns.child:
        if ns.child[0] == "produce":
            _child_produce(*ns.child[1:])
        elif ns.child[0] == "speed":
            _child_speed(*ns.child[1:])
        else:
            _child_check(*ns.child[1:])
        return
    info = machine()
    with tempfile.TemporaryDirectory(prefix="tz-conv-layout-") as tmp:
        root = Path(tmp)
        for name in ns.blueprints.split(","):
            compiled: list[str] = []
            for variant in ns.variants.split(","):
                tag = f"{Path(name).stem}-{variant}"
                line: dict[str, object] = {"bench": "conv_layout", "blueprint": Path(name).stem, "variant": variant,
                                           "threads": ns.threads}
                # Each compile gets a cold Inductor cache: compile_s is what a fresh FAST job pays.
                line.update(_run(["--child", "produce", name, variant, str(root / f"{tag}.bin")],
                                 root / f"cache-{tag}", ns.threads))
                if "error" not in line:
                    line.update(_run(["--child", "check", name, str(root / f"{tag}.bin"), str(root / f"kernels-{tag}")],
                                     root / f"consumer-cache-{tag}", ns.threads))
                    compiled.append(f"{variant}={root / f'{tag}.bin'}")
                line["machine"] = {**info, "load_avg_1m": round(os.getloadavg()[0], 2)}
                print(json.dumps(line), flush=True)
            # The variants side by side in one process: the fair speed comparison on a shared machine.
            line = {"bench": "conv_layout_speed", "blueprint": Path(name).stem, "threads": ns.threads}
            line.update(_run(["--child", "speed", name, str(root / f"speed-kernels-{Path(name).stem}"), *compiled],
                             root / f"speed-cache-{Path(name).stem}", ns.threads))
            line["machine"] = {**info, "load_avg_1m": round(os.getloadavg()[0], 2)}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
