"""The reproductions of docs/dynamic-batch.md: what torch does when one precompiled AOTI entry is
asked to cover a batch range. Re-run them on a torch upgrade: each line says whether torch still
behaves as documented (then `precompile.py`'s workaround is still needed and still sufficient).

Each reproduction runs in its own fresh process with its own Inductor cache dir (they patch nothing
globally, but Dynamo's state is per process) and prints one JSON line: id, what happened (`outcome`:
`error` with the exception, or the entry's batch guard and which batches it accepted), what the
docs say, and the machine record.

Usage: python bench/dynamic_batch_repro.py [--only R1,R4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

EXPECTED = {
    "R1": "mark_dynamic: InductorError 'Symbol' object has no attribute 'dtype' (AOTI input checks)",
    "R1u": "mark_unbacked: the same error",
    "R3": "with the codegen workaround but no runner adapter: TypeError from the AOTI runner's run()",
    "R4": "conv2d, backed batch over [2, 64] (with the workaround): ConstraintViolationError, guard batch <= 15",
    "R5": "SDPA, backed batch min=1, backed_size_oblivious (with the workaround): guard 2 <= batch, batch 1 refused",
    "R6": "MLP, backed batch min=1 (with the workaround): guard 2 <= batch (0/1 specialisation)",
    "R7": "torch.compile(module, dynamic=True)._aot_compile: a static entry (batch 8 only)",
    "R8": "aot_compile_fullgraph(dynamic=True): TensorifyScalarRestartAnalysis",
    "R9": "conv+BN, unbacked batch, default layout_optimization: forward differs from eager",
    "OK": "MLP, unbacked batch [1, 64] with the workaround (what Tezzeret builds): batches 1-64 accepted, 65 refused",
}


def _module(kind: str) -> Any:
    """A module of a class defined at module level (a precompiled entry pickles a reference to it)."""
    import torch

    torch.manual_seed(0)
    if kind == "mlp":
        return _classes()["MLP"](), (8, 16, 128)
    if kind == "attn":
        return _classes()["Attention"](), (8, 32, 128)
    return torch.nn.Sequential(
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU()
    ), (8, 16, 16, 16)


def _classes() -> dict[str, type]:
    # Defined on first use so the parent process never imports torch; registered as globals of
    # this module so they pickle by reference.
    if "MLP" in globals():
        return {"MLP": globals()["MLP"], "Attention": globals()["Attention"]}
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln, self.fc1, self.fc2 = nn.LayerNorm(128), nn.Linear(128, 512), nn.Linear(512, 128)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc2(F.gelu(self.fc1(self.ln(x))))

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(128, 384)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = (p.reshape(b, t, 4, 32).transpose(1, 2) for p in self.qkv(x).split(d, dim=-1))
            return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)

    for cls in (MLP, Attention):
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls
    return {"MLP": MLP, "Attention": Attention}


def _child(rid: str) -> dict[str, object]:
    import contextlib

    import torch
    import torch._dynamo
    import torch._dynamo.config as dynamo_config
    import torch.fx.experimental._config as fx_config
    from torch._dynamo.aot_compile import AOTCompiledFunction, ModelInput

    from tezzeret.compile import precompile

    torch.set_num_threads(1)
    dynamo_config.enable_aot_compile = True
    options = {"use_aoti": True, "fallback_random": True, "cpp.march": "x86-64-v3", "compile_threads": 1}
    kind = {"R4": "conv", "R5": "attn", "R9": "conv"}.get(rid, "mlp")
    module, shape = _module(kind)
    x = torch.randn(*shape)
    stack = contextlib.ExitStack()
    dynamic: bool | None = None
    if rid in ("R1", "R4", "R5", "R6"):
        lo = {"R4": 2}.get(rid, 1)
        torch._dynamo.mark_dynamic(x, 0, min=lo, max=64)
        if rid == "R5":
            stack.enter_context(fx_config.patch(backed_size_oblivious=True))
        if rid != "R1":
            # Past R1 with the workaround, to reach what backed sizes do to the guards.
            stack.enter_context(precompile._symint_codegen())
    elif rid in ("R1u", "R3", "R9", "OK"):
        torch._dynamo.decorators.mark_unbacked(x, 0, min=1, max=64)
        if rid != "R1u":
            stack.enter_context(precompile._symint_codegen())
    elif rid == "R7":
        dynamic = True
    if kind == "conv" and rid != "R9":
        options["layout_optimization"] = False
    try:
        with stack:
            if rid == "R8":
                def run(m: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
                    return m(t)

                entry = torch.compile(run, fullgraph=True, dynamic=True, options=options).aot_compile(((module, x), {}))
                module_arg: tuple[Any, ...] = (module,)
            else:
                compiled = torch.compile(module, fullgraph=True, dynamic=dynamic, options=options)
                compiled._aot_compile([ModelInput((x,), {}, [torch.enable_grad()])])
                entry = compiled.forward.compiled_results[0]
                module_arg = (module,)
        if rid == "R3":
            # Torch's own load path, no adapter (the .so is still where the compile left it).
            entry = AOTCompiledFunction.deserialize(AOTCompiledFunction.serialize(entry).serialized_data)
    except Exception as exc:  # noqa: BLE001 - the failure is the result
        return {"outcome": "error", "error": f"{type(exc).__name__}: {str(exc).strip()[:600]}"}
    guards: list[str] = []  # the batch's range guard and the input's size pattern (None = symbolic)
    for line in str(entry._artifacts.guard_manager).splitlines():
        if "LAMBDA_GUARD" in line and "size()[0]" in line:
            guards.append(line.split("LAMBDA_GUARD:", 1)[1].split("#", 1)[0].strip())
        found = re.search(r"check_tensor\(L\['(x|input|t)'\].*?(size=\[[^\]]*\])", line)
        if found:
            guards.append(f"{found.group(1)} {found.group(2)}")
    accepted, mismatched = [], []
    for b in (1, 2, 3, 8, 17, 64, 65, 100):
        xb = torch.randn(b, *shape[1:])
        if not entry.guard_check(*module_arg, xb):
            continue
        accepted.append(b)
        try:
            got = entry(*module_arg, xb)
        except Exception as exc:  # noqa: BLE001 - the failure is the result
            return {"outcome": "error", "at_batch": b, "error": f"{type(exc).__name__}: {str(exc).strip()[:600]}", "guards": guards}
        if not torch.allclose(got, module(xb), rtol=2e-3, atol=1e-4):
            mismatched.append(b)
    return {"outcome": "compiled", "guards": guards, "accepted": accepted, "differs_from_eager_at": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(EXPECTED))
    parser.add_argument("--child")
    ns = parser.parse_args()
    if ns.child:
        print(json.dumps(_child(ns.child)))
        return
    info = machine()
    for rid in ns.only.split(","):
        with tempfile.TemporaryDirectory(prefix="tz-repro-") as cache:
            env = dict(os.environ)
            env.update({"TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3",
                        "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"})
            proc = subprocess.run([sys.executable, __file__, "--child", rid], capture_output=True, text=True, env=env, check=False)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"outcome": "child failed", "stderr": proc.stderr[-800:]}
        print(json.dumps({"bench": "dynamic_batch_repro", "id": rid, "documented": EXPECTED[rid], **result, "machine": info}), flush=True)


if __name__ == "__main__":
    main()
