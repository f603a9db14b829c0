"""The producer side of torch's private precompile API (torch 2.13): compiling one entry.

Owns: compiling one static entry (shape × grad mode) of a module with Dynamo AOT precompile and
AOTInductor packaging, and reading torch's compile counters. The consumer side (deserialising an
entry, re-homing its native files, guard checks) is `tezzeret.artifact.payload`; those two files
are the only ones that touch torch's private APIs, so a torch upgrade is ported there. Must never
decide policy (tiers, verification, file layout).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from tezzeret.artifact.payload import CompiledEntry, enable_aot_compile, format_for

PAYLOAD_FORMAT = format_for(torch.__version__)


def compile_entry(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    options: Mapping[str, object],
) -> CompiledEntry:
    """Compile one static entry for `args` in the given grad mode (Inductor, AOTI packaging)."""
    import torch._dynamo
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.aot_compile import ModelInput

    enable_aot_compile()
    # Automatic dynamic shapes would turn a second entry's batch into a symbol, which AOTI codegen
    # cannot handle ('Symbol' object has no attribute 'dtype'): every entry is static and compiled
    # from a clean Dynamo state.
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, dynamic=False, options=dict(options))
    context = torch.enable_grad() if grad_enabled else torch.no_grad()
    with dynamo_config.patch(automatic_dynamic_shapes=False, assume_static_by_default=True):
        compiled._aot_compile([ModelInput(tuple(args), {}, [context])])
    results = compiled.forward.compiled_results
    if len(results) != 1:
        raise RuntimeError(f"expected one compiled result, torch produced {len(results)}")
    return CompiledEntry(results[0])


def compile_counters() -> dict[str, int]:
    """Torch's compile counters (Dynamo graphs, AOTAutograd, Inductor), flattened; zero = no compile."""
    from torch._dynamo.utils import counters

    out: dict[str, int] = {}
    for group in ("stats", "aot_autograd", "inductor", "frames"):
        for key, value in counters[group].items():
            out[f"{group}.{key}"] = int(value)
    return out
