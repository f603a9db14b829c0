"""Blueprints and shared, compiled-once artifacts for the compile and loader tests.

Inductor compiles cost 10-30 s each on the project's 2-core machines, so every artifact here is
built at most once per test session (both test folders ask for it by name) into the session's
temporary directory, with its own Inductor cache dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tezzeret.leyline import pb

TINY_MLP = {
    "schema_version": 1,
    "inputs": [
        {
            "name": "x",
            "dtype": "DTYPE_FLOAT32",
            "dims": [{"symbol": "batch", "min": "1", "max": "64", "size": "8"}, {"size": "32"}],
        }
    ],
    "nodes": [
        {"name": "ln", "op": "layer_norm", "inputs": ["x"], "attrs": [{"key": "normalized_dims", "i": "1"}]},
        {"name": "fc1", "op": "linear", "inputs": ["ln"], "attrs": [{"key": "out_features", "i": "64"}]},
        {"name": "act", "op": "gelu", "inputs": ["fc1"]},
        {"name": "fc2", "op": "linear", "inputs": ["act"], "attrs": [{"key": "out_features", "i": "32"}]},
        {"name": "res", "op": "add", "inputs": ["x", "fc2"]},
    ],
    "outputs": ["res"],
    "metadata": {"name": "tiny-mlp", "category": "mlp", "tier": "TIER_SAFE", "init_seed": "7"},
}

# Small blueprints for the patterns torch 2.13's precompile + AOTI got wrong before the compile
# stage's workarounds (conv: wrong gradients from channels-last layout optimisation; embedding_bag:
# the proxy executor's `.json` re-homed away from its `.so`). One FAST training entry each.
BLUEPRINTS = Path(__file__).with_name("blueprints")
CONV_PATTERNS = ("conv_bn", "conv_gelu", "grouped_conv", "depthwise_strided", "conv1d")
EMBEDDING_BAG_PATTERNS = ("embedding_bag_sum", "embedding_bag_mean", "embedding_bag_max")
PATTERNS = CONV_PATTERNS + EMBEDDING_BAG_PATTERNS


def pattern_doc(name: str) -> dict:
    return json.loads((BLUEPRINTS / f"{name}.json").read_text())


CONV_BN = pattern_doc("conv_bn")


def ir_of(doc: dict) -> pb.BlueprintIR:
    from tezzeret.blueprint import load_blueprint

    return load_blueprint(json.dumps(doc))


def shared_artifact(base: Path, name: str, doc: dict, strategy: str, **kwargs: object) -> Path:
    """Compile `doc` once per session under `base/name`; later callers get the same file (also
    from another pytest-xdist worker, which waits on the lock while the first compiles)."""
    from filelock import FileLock

    home = base / name
    done = home / "PATH"
    with FileLock(str(base / f"{name}.lock")):
        if done.exists():
            return Path(done.read_text())
        from tezzeret.compile import compile_blueprint

        outcome = compile_blueprint(
            json.dumps(doc), strategy, home / "out", cache_dir=home / "inductor", **kwargs
        )
        done.write_text(str(outcome.path))
        return outcome.path


def session_base(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one directory for every xdist worker of this run
    base = root / "tz-artifacts"
    base.mkdir(exist_ok=True)
    return base


def fast_mlp_artifact(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The multi-entry FAST artifact: training entries at batch 8 and 4."""
    return shared_artifact(
        session_base(tmp_path_factory), "fast-mlp", TINY_MLP, "fast", batch_sizes=[8, 4], budget_s=600
    )


def pattern_artifact(tmp_path_factory, name: str) -> Path:  # type: ignore[no-untyped-def]
    """The FAST artifact of pattern `name` (one training entry at the declared batch)."""
    return shared_artifact(session_base(tmp_path_factory), f"pattern-{name}", pattern_doc(name), "fast", budget_s=600)


def fresh_process_parity(paths: list[Path], workdir: Path) -> dict:
    """Load every entry of `paths` in one fresh process (empty Inductor cache, empty kernel dir)
    and check each against eager over two SGD steps; the consumer's JSON report."""
    import subprocess
    import sys

    cache = workdir / "empty-inductor-cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = clean_env(TORCHINDUCTOR_CACHE_DIR=str(cache), TMPDIR=str(workdir))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("parity_consumer.py")), str(workdir / "kernels"), *map(str, paths)],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["cache_dir_entries"] = sorted(p.name for p in cache.iterdir())
    return report


def fast_dynamic_artifact(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """FAST's default plan for TINY_MLP: one dynamic-batch training entry over [1, 64]."""
    return shared_artifact(session_base(tmp_path_factory), "fast-mlp-dynamic", TINY_MLP, "fast", budget_s=600)


def clean_env(**extra: str) -> dict[str, str]:
    """Environment for a fresh consumer process: pinned ISA, one thread, nothing inherited from
    this process's Inductor cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    env.update({"TORCHINDUCTOR_CPP_MARCH": "x86-64-v3", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env
