"""Every library blueprint through every tier: compile time, size, adoption, speed vs eager.

Prints one JSON line per (blueprint, tier): compile_s (in a fresh process, Inductor cache shared
across the run like the forge's L3), artifact_bytes, entries and dropped entries, load_s and
first_step_s in a fresh consumer process with an empty Inductor cache, and the per-entry speed-ups
vs eager the compiler measured (forward and forward+backward), plus whether each entry serves
compiled code or eager. Failures (e.g. an entry dropped by the parity check) are lines too.

`served` is what a training loop gets from the loaded artifact (`fallback="eager"`) at each batch
size: the forward+backward speed-up vs eager of the path the artifact serves (a compiled entry,
or eager where the manifest says eager is faster or no entry covers the batch), measured in the
fresh consumer process as the median of 3 paired comparisons (`verify.compare_runners`), beside
the same measurement of eager against eager (`eager_vs_eager`: the machine's noise floor). Batch sizes: the
blueprint's range ends, its example batch, a batch no tier builds statically, and every static
entry's batch. A final `tiers_summary` line gives, per tier, the median over blueprints of the
served speed-up at the example batch and whether any served path was slower than eager (by more
than the 10% the shared machine's noise allows, and at all), and which points were slower than 0.9x
once divided by their `eager_vs_eager` (the bench's own bias). Records the machine on every line.

`--set representative` narrows the run to REPRESENTATIVE, one library blueprint of each kind the
payback targets are judged on (AGGRESSIVE over the whole library takes hours on 2 cores).

Usage: python bench/tiers.py [--blueprints mlp_512,conv_bn_relu_32x64 | --set representative]
                             [--tiers emergency,fast] [--out results.jsonl]
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

# One library blueprint per kind: an MLP, attention, a convolution, an embedding, a mixture of
# experts and a norm block (RMSNorm gating an MLP).
REPRESENTATIVE = (
    "mlp_512",
    "mhsa_4h_256",
    "conv_bn_relu_32x64",
    "token_embedding_pool_256",
    "moe_top2_256",
    "rmsnorm_gated_mlp_768",
)
# A served path counts as slower than eager only beyond this: the torch notes measure paired
# differences under 10% as noise on the shared 2-core machines (compile.py's static margin).
NOISE = 0.10
# Paired comparisons per batch size; their median is reported (single ones swung by 40% under load).
REPEATS = 3


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
        "served_compiled": module.calls_compiled, "served": _served(path, manifest),
    }))


def _served(path: str, manifest: object) -> list[dict[str, object]]:
    """Forward+backward speed-up of the loaded artifact's served path vs eager, per batch size."""
    from tezzeret.blueprint import batch_dims, example_inputs
    from tezzeret.compile.compile import verification_batches
    from tezzeret.compile.verify import compare_runners
    from tezzeret.loader import load

    ir = manifest.blueprint  # type: ignore[attr-defined]
    where = batch_dims(ir)
    batches = set(verification_batches(ir))
    for e in manifest.entries:  # type: ignore[attr-defined]
        if not e.dynamic_batch and where:
            i, d = where[0]
            batches.add(int(e.inputs[i].shape[d]))
    out: list[dict[str, object]] = []
    for batch in sorted(batches):
        args = example_inputs(ir, batch if where else None)
        made: list[object] = []

        def make() -> object:
            made.append(load(path, fallback="eager", trust_unsigned=True))
            return made[-1]

        def eager(m: object, a: tuple[object, ...]) -> object:
            return m.module(*a)  # type: ignore[attr-defined]

        def served(m: object, a: tuple[object, ...]) -> object:
            return m(*a)  # type: ignore[operator]

        # Both sides are loaded artifacts with the same parameters and inputs: the first runs its
        # inner module eagerly, the second serves the call as a consumer would. The median of
        # REPEATS paired comparisons, and the same for eager against eager (the noise floor).
        ratios = [compare_runners(make, eager, served, args, grad_enabled=True).ratio for _ in range(REPEATS)]
        compiled = any(m.calls_compiled for m in made)  # type: ignore[attr-defined]
        control = [compare_runners(make, eager, eager, args, grad_enabled=True).ratio for _ in range(REPEATS)]
        out.append({
            "batch": batch,
            "speedup_train": round(1.0 / statistics.median(ratios), 3),
            "path": "compiled" if compiled else "eager",
            "eager_vs_eager": round(1.0 / statistics.median(control), 3),
        })
    return out


def _run(args: list[str], cache: Path) -> dict[str, object]:
    env = dict(os.environ)
    env.update({"TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": {"code": "CHILD_FAILED", "message": proc.stderr[-1500:]}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(lines: list[dict[str, object]], tiers: list[str], info: dict[str, object]) -> dict[str, object]:
    """Per tier: median over blueprints of the served speed-up at the example batch (and of each
    blueprint's median over batch sizes), the slowest served path, and whether any was slower."""
    out: dict[str, object] = {"bench": "tiers_summary"}
    for tier in tiers:
        rows = [ln for ln in lines if ln["tier"] == tier and ln.get("served")]
        if not rows:
            out[tier] = {"blueprints": 0}
            continue
        at_example = [float(r["served_at_example"]) for r in rows]  # type: ignore[arg-type]
        per_bp = [statistics.median(float(p["speedup_train"]) for p in r["served"]) for r in rows]  # type: ignore[union-attr]
        every = [float(p["speedup_train"]) for r in rows for p in r["served"]]  # type: ignore[union-attr]
        # Served against the same measurement of eager against eager: the bench's own bias (up to
        # 0.57x at one blueprint and batch, with both sides eager) cancels out.
        relative = [
            (f"{r['blueprint']}@{p['batch']}", float(p["speedup_train"]) / float(p["eager_vs_eager"]))  # type: ignore[index]
            for r in rows for p in r["served"]  # type: ignore[union-attr]
        ]
        out[tier] = {
            "blueprints": len(rows),
            "median_served_train_speedup": round(statistics.median(at_example), 3),
            "median_served_train_speedup_over_batches": round(statistics.median(per_bp), 3),
            "min_served_train_speedup": round(min(every), 3),
            "any_served_slower_than_eager": any(x < 1.0 - NOISE for x in every),
            "slower_than_eager_beyond_noise_floor": [
                f"{where} {x:.2f}x" for where, x in relative if x < 1.0 - NOISE
            ],
            "served_below_1": sum(1 for x in every if x < 1.0),
            "served_points": len(every),
            "eager_vs_eager_range": [
                round(min(float(p["eager_vs_eager"]) for r in rows for p in r["served"]), 3),  # type: ignore[union-attr]
                round(max(float(p["eager_vs_eager"]) for r in rows for p in r["served"]), 3),  # type: ignore[union-attr]
            ],
            "compile_s_total": round(sum(float(r["compile_s"]) for r in rows), 1),  # type: ignore[arg-type]
        }
    out["machine"] = info
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprints", default="")
    parser.add_argument("--set", choices=["library", "representative"], default="library")
    parser.add_argument("--tiers", default="emergency,fast,standard,aggressive")
    parser.add_argument("--out", default="", help="also append every line to this file")
    parser.add_argument("--child", nargs="*")
    ns = parser.parse_args()
    if ns.child:
        if ns.child[0] == "compile":
            _child_compile(*ns.child[1:])
        else:
            _child_load(ns.child[1])
        return
    from tezzeret.artifact.file import read_manifest
    from tezzeret.blueprint import batch_dims, library

    names = [b.name for b in library()]
    if ns.set == "representative":
        names = [n for n in names if n in REPRESENTATIVE]
    if ns.blueprints:
        names = [n for n in names if n in ns.blueprints.split(",")]
    tiers = ns.tiers.split(",")
    info = machine()
    lines: list[dict[str, object]] = []

    def emit(line: dict[str, object]) -> None:
        print(json.dumps(line), flush=True)
        if ns.out:
            with open(ns.out, "a") as f:
                f.write(json.dumps(line) + "\n")

    with tempfile.TemporaryDirectory(prefix="tz-tiers-") as tmp:
        root = Path(tmp)
        for name in names:
            for tier in tiers:
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
                    where = batch_dims(manifest.blueprint)
                    example = int(manifest.blueprint.inputs[where[0][0]].dims[where[0][1]].size) if where else 0
                    for point in line.get("served") or []:  # type: ignore[union-attr]
                        if not where or point["batch"] == example:
                            line["served_at_example"] = point["speedup_train"]
                line["machine"] = info
                lines.append(line)
                emit(line)
    emit(_summary(lines, tiers, info))


if __name__ == "__main__":
    main()
