"""The producer side of torch's private precompile API (torch 2.13): compiling one entry.

Owns: compiling one static entry (shape × grad mode) of a module with Dynamo AOT precompile and
AOTInductor packaging, and reading torch's compile counters. The consumer side (deserialising an
entry, re-homing its native files, guard checks) is `tezzeret.artifact.payload`; those two files
are the only ones that touch torch's private APIs, so a torch upgrade is ported there. Must never
decide policy (tiers, verification, file layout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from tezzeret.artifact.payload import REHOME_LOCK, CompiledEntry, enable_aot_compile, format_for

PAYLOAD_FORMAT = format_for(torch.__version__)


def _report_output_strides() -> None:
    """Tell AOTAutograd the strides of the graph Inductor is lowering (its forward's outputs)."""
    from torch._guards import TracingContext
    from torch._inductor.graph import GraphLowering
    from torch._inductor.ir import IRNode
    from torch._inductor.virtualized import V

    ctx = TracingContext.try_get()
    # Only inside AOTAutograd's forward compile, where the list is waiting (empty) to be filled.
    if ctx is None or ctx.output_strides is None or len(ctx.output_strides) != 0:
        return
    try:
        graph = V.graph
    except Exception:  # noqa: BLE001 - no graph handler installed: nothing to report
        return
    if not isinstance(graph, GraphLowering) or graph.graph_outputs is None:
        return
    for out in graph.graph_outputs:
        if isinstance(out, IRNode) and out.has_tensor_output():
            ctx.output_strides.append(tuple(int(s) for s in out.get_layout().stride))
        else:
            ctx.output_strides.append(None)


@contextlib.contextmanager
def _forward_strides_reported() -> Iterator[None]:
    """Workaround B for torch 2.13's AOT path: report the forward's output strides at compile time.

    The non-AOT path reports them from `CompiledFxGraph.post_compile`
    (`set_tracing_context_output_strides`), so AOTAutograd compiles the backward for the layouts
    the forward really saves (channels-last after Inductor's layout optimisation). The AOT branch
    of `_InProcessFxCompile.codegen_and_compile` returns `CompiledAOTI` and never does, so the
    backward reads channels-last activations as NCHW. V.graph is still the GraphLowering while
    CompiledAOTI is constructed, which is where this hooks in.
    """
    from torch._inductor.output_code import CompiledAOTI

    original = CompiledAOTI.__post_init__

    def post_init(self: Any) -> None:
        original(self)
        _report_output_strides()

    with REHOME_LOCK:
        CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]
        try:
            yield
        finally:
            CompiledAOTI.__post_init__ = original  # type: ignore[method-assign]


def compile_entry(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    options: Mapping[str, object],
    report_forward_strides: bool = False,
) -> CompiledEntry:
    """Compile one static entry for `args` in the given grad mode (Inductor, AOTI packaging).

    `report_forward_strides` applies the stride-reporting workaround for torch 2.13's wrong conv
    gradients (see `_forward_strides_reported`). The tiers use `layout_optimization: False`
    instead (measured against this in bench/conv_layout.py; tiers.py says why); it stays here so
    that comparison can be rerun when torch changes.
    """
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
    strides = _forward_strides_reported() if report_forward_strides else contextlib.nullcontext()
    with strides, dynamo_config.patch(automatic_dynamic_shapes=False, assume_static_by_default=True):
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
