"""What a training loop pays to adopt a new blueprint, side by side in fresh processes.

Prints one JSON line: `inline_cold_s` (torch.compile, empty Inductor cache dir; the C++ toolchain's
precompiled header may already be warm), `inline_warm_s` (same, with that cache dir now warm),
`megacache_s` (Mega-Cache blob loaded into an empty cache dir, then torch.compile), `tezzeret_s`
(a FAST Tezzeret artifact loaded into an empty cache dir), each from "module built" to "first
training step (forward, backward, SGD) done", and `speedup_vs_inline_cold`. The one-time imports
every path needs (Dynamo, AOTAutograd, Inductor's output code; a KernelProvider does them in its
background thread at start) are done before the clock starts and reported as
`one_time_imports_s`, with `speedup_vs_inline_cold_with_imports` counting them on both sides
(`--no-prewarm` puts them inside every timed span instead). Records the machine.

`--device cuda` measures the same on the current GPU: the artifact is compiled for `cuda`, the
module and inputs live on the device, and each span ends after `torch.cuda.synchronize()`
(`bench/gpu_check.py` runs it so).

Usage: python bench/adoption.py [--blueprint residual_mlp_256] [--no-prewarm] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any
from pathlib import Path

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script


def _child(mode: str, blueprint: str, arg: str, prewarm: bool, device: str = "cpu") -> None:
    import torch

    from tezzeret.blueprint import build_module, example_inputs, example_training_step, library_blueprint

    ir = library_blueprint(blueprint)
    if mode == "produce":
        from tezzeret.compile import compile_blueprint

        from tezzeret.store import SigningKey, sign_artifact_file

        t = time.perf_counter()
        outcome = compile_blueprint(ir, "fast", arg, target=device)
        # Signed as the forge signs it, so adoption pays the signature check a consumer pays.
        key = SigningKey.load_or_create(Path(arg) / "keys")
        sign_artifact_file(outcome.path, key)
        print(json.dumps({"path": str(outcome.path), "compile_s": time.perf_counter() - t,
                          "public_key": key.public_key_bytes.hex()}))
        return
    inputs = tuple(t.to(device) for t in example_inputs(ir))

    def synced() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    t_imports = time.perf_counter()
    if prewarm:
        # The same one-time imports for every path (Dynamo, AOTAutograd, Inductor's output code):
        # a provider does them in its background thread at start-up; inline torch.compile needs
        # them too. Timed separately so both views are visible.
        from tezzeret.loader import prewarm as warm_imports

        warm_imports()
    t0 = time.perf_counter()
    if mode == "tezzeret":
        from tezzeret.loader import load

        model = load(arg, serve="compiled", public_key=os.environ["TEZZERET_BENCH_PUBLIC_KEY"])
    else:
        base = build_module(ir).to(device)
        if mode == "megacache":
            torch.compiler.load_cache_artifacts(Path(arg).read_bytes())
        model = torch.compile(base)
    loaded = synced()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    example_training_step(model, opt, inputs)
    done = synced()
    if mode == "inline" and arg:
        blob = torch.compiler.save_cache_artifacts()
        if blob is not None:
            Path(arg).write_bytes(blob[0])
    print(json.dumps({
        "adopt_s": done - t0, "load_s": loaded - t0, "first_step_s": done - loaded,
        "imports_s": t0 - t_imports,
    }))


def _run(mode: str, blueprint: str, arg: str, cache: Path, extra: tuple[str, ...] = (), public_key: str = "") -> dict[str, Any]:
    env = dict(os.environ)
    env["TEZZERET_BENCH_PUBLIC_KEY"] = public_key
    env.update(
        {
            "TORCHINDUCTOR_CACHE_DIR": str(cache),
            "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
            "ATEN_CPU_CAPABILITY": "avx2",
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        }
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--blueprint", blueprint, "--arg", arg, *extra],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprint", default="residual_mlp_256")
    parser.add_argument("--child", default="")
    parser.add_argument("--arg", default="")
    parser.add_argument("--no-prewarm", action="store_true", help="time the one-time imports inside adoption")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ns = parser.parse_args()
    if ns.child:
        _child(ns.child, ns.blueprint, ns.arg, not ns.no_prewarm, ns.device)
        return
    with tempfile.TemporaryDirectory(prefix="tz-adoption-") as tmp:
        root = Path(tmp)
        produced = _run("produce", ns.blueprint, str(root / "artifacts"), root / "producer-cache", ("--device", ns.device))
        blob = root / "megacache.bin"
        extra = (*(("--no-prewarm",) if ns.no_prewarm else ()), "--device", ns.device)
        cold = _run("inline", ns.blueprint, str(blob), root / "inline-cache", extra)
        warm = _run("inline", ns.blueprint, "", root / "inline-cache", extra)
        mega = _run("megacache", ns.blueprint, str(blob), root / "mega-cache", extra) if blob.exists() else None
        tz = _run("tezzeret", ns.blueprint, produced["path"], root / "tezzeret-cache", extra, produced["public_key"])
        left = sorted(os.listdir(root / "tezzeret-cache")) if (root / "tezzeret-cache").exists() else []
        size = Path(produced["path"]).stat().st_size
    result = {
        "bench": "adoption",
        "blueprint": ns.blueprint,
        "device": ns.device,
        "inline_cold_s": round(cold["adopt_s"], 3),
        "inline_warm_s": round(warm["adopt_s"], 3),
        "megacache_s": round(mega["adopt_s"], 3) if mega else None,
        "tezzeret_s": round(tz["adopt_s"], 3),
        "tezzeret_load_s": round(tz["load_s"], 3),
        "tezzeret_first_step_s": round(tz["first_step_s"], 3),
        "speedup_vs_inline_cold": round(cold["adopt_s"] / tz["adopt_s"], 1),
        "imports_prewarmed": not ns.no_prewarm,
        "one_time_imports_s": round(tz["imports_s"], 3),
        "speedup_vs_inline_cold_with_imports": round(
            (cold["adopt_s"] + cold["imports_s"]) / (tz["adopt_s"] + tz["imports_s"]), 1
        ),
        "tezzeret_cache_dir_after": left,
        "artifact_compile_s": round(produced["compile_s"], 1),
        "artifact_bytes": size,
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
