"""Every private torch API Tezzeret uses, behind one small surface (torch 2.13).

Owns: compiling one entry of a module with Dynamo AOT precompile and AOTInductor packaging (static:
one shape × grad mode; dynamic batch: one grad mode for every batch in a declared range),
serialising it, loading it back with its bundled `.so` re-homed into a directory we choose, guard
checks, and reading torch's compile counters. Must never decide policy (tiers, verification, file
layout) and must never be imported for anything but these calls: when torch changes, this is the
one file to port.

Why the re-homing: in torch 2.13 `CompiledAOTI.__post_init__` dlopens the `.so` at the producer's
absolute path before it writes the bundled bytes back, so an entry loaded on another host or with
another cache dir fails with "cannot open shared object file". We rewrite the paths first.

Why dynamic entries need two more workarounds (docs/dynamic-batch.md has the reproductions): with
a symbolic batch, Dynamo passes the batch size to the graph as a SymInt input and AOTAutograd saves
SymInts for the backward, but torch 2.13's AOTInductor codegen assumes every graph input is a
tensor (`'Symbol' object has no attribute 'dtype'`, then "input ... cannot be symbolic") and its
runner takes and returns tensors only. While a dynamic entry compiles we let AOTI see each SymInt
input as a 0-d int64 tensor (which its generated code already reads back as a scalar) and record
which inputs and outputs are SymInts on the `CompiledAOTI`; when an entry loads, its runner is
wrapped to box those inputs as 0-d tensors and unbox those outputs to ints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PAYLOAD_FORMAT = "dynamo-aot-precompile+aoti/torch-2.13"
# A dynamic-batch entry: the same container, but loading it needs the SymInt adapter below, which
# a loader that predates it lacks (it must refuse the format instead of crashing in the runner).
DYNAMIC_PAYLOAD_FORMAT = "dynamo-aot-precompile+aoti+symint-io/torch-2.13"

# Set on a CompiledAOTI while a dynamic entry compiles and pickled with it: the positions of its
# runner's inputs and outputs that are SymInts in the graph (0-d int64 tensors in the .so).
_SYMINT_INPUTS = "_tezzeret_symint_inputs"
_SYMINT_OUTPUTS = "_tezzeret_symint_outputs"

# Guards the class-level patch of CompiledAOTI while entries load; loads happen from a provider's
# background thread and the training thread at once.
_REHOME_LOCK = threading.Lock()


class CompiledEntry:
    """One compiled, guarded forward (and backward, for training entries) of a module."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn  # torch._dynamo.aot_compile.AOTCompiledFunction

    def matches(self, module: nn.Module, args: tuple[Any, ...]) -> bool:
        """True when this entry's guards accept (module, args) in the current grad mode."""
        return bool(self._fn.guard_check(module, *args))

    def __call__(self, module: nn.Module, *args: Any) -> Any:
        return self._fn(module, *args)

    def serialize(self) -> bytes:
        from torch._dynamo.aot_compile import AOTCompiledFunction

        return bytes(AOTCompiledFunction.serialize(self._fn).serialized_data)

    def guard_digest(self) -> str:
        """SHA-256 of the serialised guard set (what a consumer's call must satisfy)."""
        return hashlib.sha256(bytes(self._fn._artifacts.guards_state)).hexdigest()

    def why_not(self, module: nn.Module, args: tuple[Any, ...]) -> str:
        """Torch's own account of the failing guard, for error messages."""
        f_locals = self._fn.prepare_f_locals(module, *args)
        return str(self._fn._artifacts.guard_manager.check_verbose(f_locals))


@dataclass(frozen=True)
class DynamicBatch:
    """The batch dims of a dynamic entry and the inclusive range the entry must serve."""

    dims: tuple[tuple[int, int], ...]  # (input index, dim index) of every batch dim
    min: int
    max: int


def _enable() -> None:
    import torch._dynamo.config as dynamo_config

    dynamo_config.enable_aot_compile = True


def compile_entry(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    options: Mapping[str, object],
    dynamic: DynamicBatch | None = None,
) -> CompiledEntry:
    """Compile one entry for `args` in the given grad mode (Inductor, AOTI packaging).

    Static when `dynamic` is None; otherwise the batch dims in `dynamic.dims` are symbolic over
    [dynamic.min, dynamic.max] and the entry's guards accept exactly that range.
    """
    import torch._dynamo
    import torch._dynamo.config as dynamo_config
    import torch._dynamo.decorators
    from torch._dynamo.aot_compile import ModelInput

    _enable()
    # Automatic dynamic shapes would turn a second entry's batch into a symbol: every entry is
    # compiled from a clean Dynamo state, and only the dims we mark are symbolic.
    torch._dynamo.reset()
    context = torch.enable_grad() if grad_enabled else torch.no_grad()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            dynamo_config.patch(automatic_dynamic_shapes=False, assume_static_by_default=True)
        )
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
        compiled = torch.compile(
            module, fullgraph=True, dynamic=None if dynamic else False, options=dict(options)
        )
        compiled._aot_compile([ModelInput(tuple(args), {}, [context])])
    results = compiled.forward.compiled_results
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
        if not hasattr(self, _SYMINT_INPUTS) and graph_inputs is not None:
            setattr(self, _SYMINT_INPUTS, tuple(
                i for i, v in enumerate(graph_inputs.values()) if isinstance(v, sympy.Expr)
            ))
            setattr(self, _SYMINT_OUTPUTS, tuple(
                i for i, v in enumerate(V.graph.graph_outputs or ())
                if isinstance(v, ir.ShapeAsConstantBuffer)
            ))
        post_init(self)
        _adapt_symint_io(self)

    with _REHOME_LOCK:
        CppWrapperCpu.generate_input_output_runtime_checks = tensors_only(checks)  # type: ignore[method-assign]
        CppWrapperCpu.codegen_model_constructor = tensors_only(constructor)  # type: ignore[method-assign]
        CompiledAOTI.__post_init__ = recording_post_init  # type: ignore[method-assign]
        try:
            yield
        finally:
            CppWrapperCpu.generate_input_output_runtime_checks = checks  # type: ignore[method-assign]
            CppWrapperCpu.codegen_model_constructor = constructor  # type: ignore[method-assign]
            CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]


def _adapt_symint_io(aoti: Any) -> None:
    """Wrap a loaded CompiledAOTI's runner so SymInt inputs go in as 0-d tensors and SymInt
    outputs come back as ints (what AOTAutograd's runtime passes and expects)."""
    inputs = tuple(getattr(aoti, _SYMINT_INPUTS, ()))
    outputs = tuple(getattr(aoti, _SYMINT_OUTPUTS, ()))
    run = aoti.current_callable
    if run is None or not (inputs or outputs) or getattr(run, "_symint_adapted", False):
        return

    def adapted(values: list[Any]) -> Any:
        # Boxed call: `values` is ours to rewrite, as the runner would steal it anyway.
        for i in inputs:
            values[i] = torch.scalar_tensor(values[i], dtype=torch.int64)
        results = run(values)
        for i in outputs:
            results[i] = int(results[i])
        return results

    adapted._symint_adapted = True  # type: ignore[attr-defined]
    aoti.current_callable = adapted


def _rehome(aoti: Any, kernel_dir: Path) -> None:
    """Move a CompiledAOTI's bundled files to content-addressed paths under `kernel_dir`."""
    files: dict[str, bytes] = dict(aoti._cached_files)
    mapping: dict[str, str] = {}
    for old, data in files.items():
        home = kernel_dir / hashlib.sha256(data).hexdigest()[:32]
        home.mkdir(parents=True, exist_ok=True)
        new = home / os.path.basename(old)
        # Content check, not just existence: never dlopen bytes other than the verified ones.
        if not new.exists() or new.read_bytes() != data:
            tmp = new.with_name(f".{new.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, new)
        mapping[old] = str(new)
    aoti._cached_files = {mapping[k]: v for k, v in files.items()}
    if isinstance(aoti.filename, list):
        aoti.filename = [mapping.get(f, f) if isinstance(f, str) else f for f in aoti.filename]
    elif isinstance(aoti.filename, str):
        aoti.filename = mapping.get(aoti.filename, aoti.filename)


@contextlib.contextmanager
def _rehoming(kernel_dir: Path) -> Iterator[None]:
    from torch._inductor.output_code import CompiledAOTI

    original = CompiledAOTI.__post_init__

    def post_init(self: Any) -> None:
        if self._cached_files:
            _rehome(self, kernel_dir)
        original(self)
        _adapt_symint_io(self)

    with _REHOME_LOCK:
        CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]
        try:
            yield
        finally:
            CompiledAOTI.__post_init__ = original  # type: ignore[method-assign]


def load_entry(data: bytes, *, kernel_dir: Path) -> CompiledEntry:
    """Deserialise one entry (runs torch's pickle and dlopens native code: verify bytes first)."""
    from torch._dynamo.aot_compile import AOTCompiledFunction

    _enable()
    kernel_dir.mkdir(parents=True, exist_ok=True)
    with _rehoming(kernel_dir):
        fn = AOTCompiledFunction.deserialize(data)
    return CompiledEntry(fn)


def prewarm() -> None:
    """Import what loading an entry needs (Dynamo, the AOTI runtime): seconds, paid once per process.

    A provider calls this from its background thread at start so the training loop never does.
    """
    import torch._dynamo  # noqa: F401
    import torch._dynamo.aot_compile  # noqa: F401
    import torch._functorch._aot_autograd.aot_autograd_result  # noqa: F401
    import torch._inductor.output_code  # noqa: F401


def compile_counters() -> dict[str, int]:
    """Torch's compile counters (Dynamo graphs, AOTAutograd, Inductor), flattened; zero = no compile."""
    from torch._dynamo.utils import counters

    out: dict[str, int] = {}
    for group in ("stats", "aot_autograd", "inductor", "frames"):
        for key, value in counters[group].items():
            out[f"{group}.{key}"] = int(value)
    return out
