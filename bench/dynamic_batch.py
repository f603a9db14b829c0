"""Dynamic-batch entries against static ones: entry count, compile time, step time per batch size.

For each library blueprint (all with a symbolic batch), compiles two artifacts at one tier, each in
a fresh process with its own Inductor cache dir: the tier's default plan (one dynamic-batch entry
per grad mode, static ones only where the compiler measured them faster or the dynamic entry
failed) and a static-only artifact with one entry per measured batch size (the best case for static
entries: every size has its own). Then, in a fresh consumer process, times a full training step
(forward, backward, SGD; `example_training_step`) at each size through both artifacts and through
eager, in alternating rounds. Sizes an artifact has no compiled entry for run eager there (recorded
in `served`). Prints one JSON line per blueprint with the machine record.

Usage: python bench/dynamic_batch.py [--blueprints residual_mlp_256,...] [--tier fast]
       [--sizes 1,3,8,17,32,64]
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

DEFAULT_BLUEPRINTS = "residual_mlp_256,causal_sdpa_256,conv_bn_relu_32x64,token_embedding_pool_256"


def _child_compile(blueprint: str, tier: str, out: str, sizes: str) -> None:
    from tezzeret.blueprint import library_blueprint
    from tezzeret.compile import compile_blueprint
    from tezzeret.errors import TezzeretError

    batch_sizes = [int(b) for b in sizes.split(",")] if sizes else None
    t = time.perf_counter()
    try:
        # A static artifact with one entry per size outgrows the tier's budget: it gets what it needs.
        outcome = compile_blueprint(library_blueprint(blueprint), tier, out, batch_sizes=batch_sizes, budget_s=3600)
    except TezzeretError as exc:
        print(json.dumps({"error": exc.to_dict(), "compile_s": time.perf_counter() - t}))
        return
    print(json.dumps({"path": str(outcome.path), "compile_s": time.perf_counter() - t}))


def _child_measure(paths: str, sizes: str) -> None:
    import torch

    from tezzeret.blueprint import build_module, example_inputs, example_training_step
    from tezzeret.artifact.file import read_manifest
    from tezzeret.loader import load, prewarm

    prewarm()
    named = dict(p.split("=", 1) for p in paths.split(","))
    manifest, _, _ = read_manifest(next(iter(named.values())))
    modules: dict[str, torch.nn.Module] = {name: load(path, serve="compiled", fallback="eager", trust_unsigned=True) for name, path in named.items()}
    modules["eager"] = build_module(manifest.blueprint)
    optims = {name: torch.optim.SGD(m.parameters(), lr=1e-3) for name, m in modules.items()}
    report: dict[str, dict[str, object]] = {}
    for batch in (int(b) for b in sizes.split(",")):
        inputs = example_inputs(manifest.blueprint, batch)
        served: dict[str, str] = {}
        for name, module in modules.items():
            before = getattr(module, "calls_compiled", 0)
            for _ in range(3):  # first calls allocate and finish lazy initialisation
                example_training_step(module, optims[name], inputs)
            served[name] = "compiled" if getattr(module, "calls_compiled", 0) > before else "eager"
        start = time.perf_counter()
        for name, module in modules.items():
            example_training_step(module, optims[name], inputs)
        reps = max(1, min(50, int(0.02 / max((time.perf_counter() - start) / len(modules), 1e-6))))
        samples: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(11):
            for name, module in modules.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    example_training_step(module, optims[name], inputs)
                samples[name].append((time.perf_counter() - t0) * 1000.0 / reps)
        report[str(batch)] = {
            "ms": {name: round(statistics.median(v), 3) for name, v in samples.items()},
            "served": {name: how for name, how in served.items() if name != "eager"},
        }
    print(json.dumps(report))


def _run(args: list[str], cache: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.update({"TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": {"code": "CHILD_FAILED", "message": proc.stderr[-1500:]}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _describe(path: str) -> dict[str, object]:
    from tezzeret.artifact.file import read_manifest

    manifest, _, _ = read_manifest(path)
    return {
        "entries": len(manifest.entries),
        "keys": [e.key for e in manifest.entries],
        "serve_compiled": {e.key: e.serve_compiled for e in manifest.entries},
        "notes": {e.key: e.notes for e in manifest.entries if e.notes},
        "dropped": {e.key: e.drop_reason[:300] for e in manifest.stats.dropped_entries},
        "artifact_bytes": Path(path).stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprints", default=DEFAULT_BLUEPRINTS)
    parser.add_argument("--tier", default="fast")
    parser.add_argument("--sizes", default="1,3,8,17,32,64")
    parser.add_argument("--child", nargs="*")
    ns = parser.parse_args()
    if ns.child:
        if ns.child[0] == "compile":
            _child_compile(*ns.child[1:])
        else:
            _child_measure(*ns.child[1:])
        return
    info = machine()
    with tempfile.TemporaryDirectory(prefix="tz-dynbatch-") as tmp:
        root = Path(tmp)
        for name in ns.blueprints.split(","):
            line: dict[str, object] = {"bench": "dynamic_batch", "blueprint": name, "tier": ns.tier, "sizes": ns.sizes}
            paths: dict[str, str] = {}
            for kind, sizes in (("dynamic", ""), ("static", ns.sizes)):
                built = _run(["--child", "compile", name, ns.tier, str(root / kind / name), sizes], root / f"cache-{kind}-{name}")
                part: dict[str, object] = {"compile_s": round(float(built.get("compile_s", 0.0)), 2)}  # type: ignore[arg-type]
                if "error" in built:
                    part["error"] = built["error"]
                else:
                    paths[kind] = str(built["path"])
                    part.update(_describe(paths[kind]))
                line[kind] = part
            if paths:
                joined = ",".join(f"{k}={v}" for k, v in paths.items())
                line["step_ms"] = _run(["--child", "measure", joined, ns.sizes], root / f"consumer-{name}")
            line["machine"] = info
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
