"""Every library blueprint through every tier: compile time, size, adoption, speed vs eager.

Prints one JSON line per (blueprint, tier): compile_s (in a fresh process, Inductor cache shared
across the run like the forge's L3), artifact_bytes, entries and dropped entries, load_s and
first_step_s in a fresh consumer process with an empty Inductor cache, and the per-entry speed-ups
vs eager the compiler measured (forward and forward+backward), plus whether each entry serves
compiled code or eager. Failures (e.g. an entry dropped by the parity check) are lines too.
Records the machine on every line.

Usage: python bench/tiers.py [--blueprints mlp_512,conv_bn_relu_32x64] [--tiers emergency,fast]
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


def _child_compile(blueprint: str, tier: str, out: str) -> None:
    from tezzeret.blueprint import library_blueprint
    from tezzeret.compile import compile_blueprint
    from tezzeret.errors import TezzeretError

    t = time.perf_counter()
    try:
        outcome = compile_blueprint(library_blueprint(blueprint), tier, out)
    except TezzeretError as exc:
        print(json.dumps({"error": exc.to_dict(), "compile_s": time.perf_counter() - t}))
        return
    print(json.dumps({"path": str(outcome.path), "compile_s": time.perf_counter() - t}))


def _child_load(path: str) -> None:
    t0 = time.perf_counter()
    import torch

    from tezzeret.blueprint import example_inputs, example_training_step
    from tezzeret.artifact.file import read_manifest
    from tezzeret.loader import load, prewarm

    prewarm()  # one-time imports (a provider does them at start-up, off the loop's thread)
    imported = time.perf_counter()
    module = load(path, fallback="eager", trust_unsigned=True)
    loaded = time.perf_counter()
    manifest, _, _ = read_manifest(path)
    inputs = example_inputs(manifest.blueprint)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    example_training_step(module, opt, inputs)
    done = time.perf_counter()
    print(json.dumps({
        "import_s": imported - t0, "load_s": loaded - imported, "first_step_s": done - loaded,
        "served_compiled": module.calls_compiled,
    }))


def _run(args: list[str], cache: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.update({"TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": {"code": "CHILD_FAILED", "message": proc.stderr[-1500:]}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprints", default="")
    parser.add_argument("--tiers", default="emergency,fast,standard,aggressive")
    parser.add_argument("--child", nargs="*")
    ns = parser.parse_args()
    if ns.child:
        if ns.child[0] == "compile":
            _child_compile(*ns.child[1:])
        else:
            _child_load(ns.child[1])
        return
    from tezzeret.blueprint import library
    from tezzeret.artifact.file import read_manifest

    names = [b.name for b in library()]
    if ns.blueprints:
        names = [n for n in names if n in ns.blueprints.split(",")]
    info = machine()
    with tempfile.TemporaryDirectory(prefix="tz-tiers-") as tmp:
        root = Path(tmp)
        for name in names:
            for tier in ns.tiers.split(","):
                line: dict[str, object] = {"bench": "tiers", "blueprint": name, "tier": tier}
                built = _run(["--child", "compile", name, tier, str(root / "out")], root / "l3-cache")
                line["compile_s"] = round(float(built.get("compile_s", 0.0)), 2)  # type: ignore[arg-type]
                if "error" in built:
                    line["error"] = built["error"]
                else:
                    path = str(built["path"])
                    manifest, _, _ = read_manifest(path)
                    line["artifact_bytes"] = Path(path).stat().st_size
                    line["entries"] = [
                        {"key": e.key, "speedup_fwd": round(e.speedup_fwd, 3),
                         "speedup_train": round(e.speedup_train, 3), "serve_compiled": e.serve_compiled}
                        for e in manifest.entries
                    ]
                    line["dropped"] = [{"key": e.key, "reason": e.drop_reason[:200]} for e in manifest.stats.dropped_entries]
                    fresh = root / f"consumer-{name}-{tier}"
                    line.update(_run(["--child", "load", path], fresh))
                    line["consumer_cache_dir_empty"] = not fresh.exists() or not any(fresh.iterdir())
                line["machine"] = info
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
