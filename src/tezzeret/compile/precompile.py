"""The producer side of torch's private precompile API (torch 2.13): compiling one entry.

Owns: compiling one entry of a module with Dynamo AOT precompile and AOTInductor packaging (static:
one shape × grad mode; dynamic batch: one grad mode for every batch in a declared range), and
reading torch's compile counters. The consumer side (deserialising an entry, re-homing its native
files, the SymInt runner adapter, guard checks) is `tezzeret.artifact.payload`; those two files are
the only ones that touch torch's private APIs, so a torch upgrade is ported there. Must never decide
policy (tiers, verification, file layout).

Why dynamic entries need two workarounds (docs/dynamic-batch.md has the reproductions): with a
symbolic batch, Dynamo passes the batch size to the graph as a SymInt input and AOTAutograd saves
SymInts for the backward, but torch 2.13's AOTInductor codegen assumes every graph input is a
tensor (`'Symbol' object has no attribute 'dtype'`, then "input ... cannot be symbolic") and its
runner takes and returns tensors only. While a dynamic entry compiles we let AOTI see each SymInt
input as a 0-d int64 tensor (which its generated code already reads back as a scalar) and record
which inputs and outputs are SymInts on the `CompiledAOTI`; when an entry loads, its runner is
wrapped to box those inputs as 0-d tensors and unbox those outputs to ints
(`payload.adapt_symint_io`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tezzeret.artifact.payload import (
    REHOME_LOCK,
    SYMINT_INPUTS,
    SYMINT_OUTPUTS,
    CompiledEntry,
    adapt_symint_io,
    enable_aot_compile,
    format_for,
)
from tezzeret.compile.tiers import InductorOption

PAYLOAD_FORMAT = format_for(torch.__version__)
# A dynamic-batch entry: the same container, but loading it needs the SymInt adapter, which a
# loader that predates it lacks (it must refuse the format instead of crashing in the runner).
DYNAMIC_PAYLOAD_FORMAT = format_for(torch.__version__, dynamic=True)


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
        CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
        try:
            yield
        finally:
            CompiledAOTI.__post_init__ = original  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call


@dataclass(frozen=True)
class DynamicBatch:
    """The batch dims of a dynamic entry and the inclusive range the entry must serve."""

    dims: tuple[tuple[int, int], ...]  # (input index, dim index) of every batch dim
    min: int
    max: int


def compile_entry(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    options: Mapping[str, InductorOption],
    dynamic: DynamicBatch | None = None,
    report_forward_strides: bool = False,
) -> CompiledEntry:
    """Compile one entry for `args` in the given grad mode (Inductor, AOTI packaging).

    Static when `dynamic` is None; otherwise the batch dims in `dynamic.dims` are symbolic over
    [dynamic.min, dynamic.max] and the entry's guards accept exactly that range.
    `report_forward_strides` applies the stride-reporting workaround for torch 2.13's wrong conv
    gradients (see `_forward_strides_reported`). The tiers use `layout_optimization: False`
    instead (measured against this in bench/conv_layout.py; tiers.py says why); it stays here so
    that comparison can be rerun when torch changes.
    """
    import torch._dynamo
    import torch._dynamo.config as dynamo_config
    import torch._dynamo.decorators
    from torch._dynamo.aot_compile import AOTCompiledModel, ModelInput
    from torch._dynamo.eval_frame import OptimizedModule

    enable_aot_compile()
    # Automatic dynamic shapes would turn a second entry's batch into a symbol: every entry is
    # compiled from a clean Dynamo state, and only the dims we mark are symbolic.
    torch._dynamo.reset()
    context = torch.enable_grad() if grad_enabled else torch.no_grad()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            dynamo_config.patch(automatic_dynamic_shapes=False, assume_static_by_default=True)
        )
        if report_forward_strides:
            stack.enter_context(_forward_strides_reported())
        if dynamic is not None:
            # Marking copies leaves the caller's tensors unmarked (the mark is a tensor attribute
            # that Dynamo guards on).
            args = tuple(a.detach().clone() for a in args)
            for i, dim in dynamic.dims:
                # Unbacked, not `mark_dynamic`: a backed size is specialised wherever torch's own
                # code branches on it (conv's backend choice guards `batch < 16`, SDPA's strides and
                # Dynamo's 0/1 rule guard `batch >= 2`), which narrows the range or fails the
                # compile. One shape_id: every batch dim is the same size. The hint is what
                # Inductor's heuristics see instead of an arbitrary large fallback.
                torch._dynamo.decorators.mark_unbacked(
                    args[i], dim, min=dynamic.min, max=dynamic.max,
                    hint_override=int(args[i].shape[dim]), shape_id="batch",
                )
            stack.enter_context(_symint_codegen())
        inductor: dict[str, str | int | bool | Callable[..., Any]] = dict(options)
        compiled = torch.compile(module, fullgraph=True, dynamic=None if dynamic else False, options=inductor)
        if not isinstance(compiled, OptimizedModule):
            raise RuntimeError(f"torch.compile of a module returned {type(compiled).__name__}, not OptimizedModule")
        # torch annotates ModelInput.args as tuple[Any] (one element); it is the whole argument tuple.
        compiled._aot_compile([ModelInput(tuple(args), {}, [context])])  # type: ignore[arg-type]
    forward = compiled.forward
    if not isinstance(forward, AOTCompiledModel):
        raise RuntimeError(f"AOT compile left forward as {type(forward).__name__}, not AOTCompiledModel")
    results = forward.compiled_results
    if len(results) != 1:
        raise RuntimeError(f"expected one compiled result, torch produced {len(results)}")
    return CompiledEntry(results[0])


class _ScalarInput:
    """What AOTI's input-check and constructor codegen see for a SymInt input: a 0-d int64 tensor."""

    dtype = torch.int64

    def get_size(self) -> list[int]:
        return []

    def get_stride(self) -> list[int]:
        return []


@contextlib.contextmanager
def _symint_codegen() -> Iterator[None]:
    """While a dynamic entry compiles: AOTI codegen takes SymInt inputs as 0-d tensors, and every
    CompiledAOTI records which of its inputs and outputs are SymInts."""
    import sympy
    from torch._inductor import ir
    from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu
    from torch._inductor.output_code import CompiledAOTI
    from torch._inductor.virtualized import V

    def tensors_only(original: Any) -> Any:
        def patched(self: Any, *a: Any, **k: Any) -> Any:
            graph = V.graph
            saved = graph.graph_inputs
            graph.graph_inputs = {
                name: _ScalarInput() if isinstance(value, sympy.Expr) else value
                for name, value in saved.items()
            }
            try:
                return original(self, *a, **k)
            finally:
                graph.graph_inputs = saved

        return patched

    checks = CppWrapperCpu.generate_input_output_runtime_checks
    constructor = CppWrapperCpu.codegen_model_constructor
    post_init = CompiledAOTI.__post_init__

    def recording_post_init(self: Any) -> None:
        # Runs inside compile_fx with the GraphLowering that produced this .so still current; an
        # object unpickled from a cache already carries the positions.
        graph_inputs = getattr(V.graph, "graph_inputs", None)
        if not hasattr(self, SYMINT_INPUTS) and graph_inputs is not None:
            setattr(self, SYMINT_INPUTS, tuple(
                i for i, v in enumerate(graph_inputs.values()) if isinstance(v, sympy.Expr)
            ))
            setattr(self, SYMINT_OUTPUTS, tuple(
                i for i, v in enumerate(V.graph.graph_outputs or ())
                if isinstance(v, ir.ShapeAsConstantBuffer)
            ))
        post_init(self)
        adapt_symint_io(self)

    with REHOME_LOCK:
        CppWrapperCpu.generate_input_output_runtime_checks = tensors_only(checks)  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
        CppWrapperCpu.codegen_model_constructor = tensors_only(constructor)  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
        CompiledAOTI.__post_init__ = recording_post_init  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
        try:
            yield
        finally:
            CppWrapperCpu.generate_input_output_runtime_checks = checks  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
            CppWrapperCpu.codegen_model_constructor = constructor  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
            CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call


def compile_counters() -> dict[str, int]:
    """Torch's compile counters (Dynamo graphs, AOTAutograd, Inductor), flattened; zero = no compile."""
    from torch._dynamo.utils import counters

    out: dict[str, int] = {}
    for group in ("stats", "aot_autograd", "inductor", "frames"):
        for key, value in counters[group].items():
            out[f"{group}.{key}"] = int(value)
    return out
