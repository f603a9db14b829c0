"""Every private torch API Tezzeret uses, behind one small surface (torch 2.13).

Owns: compiling one static entry (shape × grad mode) of a module with Dynamo AOT precompile and
AOTInductor packaging, serialising it, loading it back with its bundled `.so` re-homed into a
directory we choose, guard checks, and reading torch's compile counters. Must never decide policy
(tiers, verification, file layout) and must never be imported for anything but these calls: when
torch changes, this is the one file to port.

Why the re-homing: in torch 2.13 `CompiledAOTI.__post_init__` dlopens the `.so` at the producer's
absolute path before it writes the bundled bytes back, so an entry loaded on another host or with
another cache dir fails with "cannot open shared object file". We rewrite the paths first, keeping
each compiled graph's bundled files together in one directory named by the hash of all of them: the
AOTI runner builds its proxy executor (for ops with no C shim, such as `_embedding_bag_backward`)
only from a `<so>.json` beside the `.so` (docs/upstream/torch-aoti-relocation.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

PAYLOAD_FORMAT = "dynamo-aot-precompile+aoti/torch-2.13"

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


def _enable() -> None:
    import torch._dynamo.config as dynamo_config

    dynamo_config.enable_aot_compile = True


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

    with _REHOME_LOCK:
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

    _enable()
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


def _entry_home(files: Mapping[str, bytes]) -> str:
    """The content address of one CompiledAOTI's bundled files: SHA-256 over every (name, bytes)."""
    digest = hashlib.sha256()
    for name, data in sorted((os.path.basename(k), v) for k, v in files.items()):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:32]


def _rehome(aoti: Any, kernel_dir: Path) -> None:
    """Move a CompiledAOTI's bundled files together into one content-addressed directory.

    Together, because the AOTI runner finds a `.so`'s proxy-executor description (`<so>.json`,
    bundled for ops without a C shim, such as `_embedding_bag_backward`) only beside the `.so`.
    """
    files: dict[str, bytes] = dict(aoti._cached_files)
    names = [os.path.basename(old) for old in files]
    if len(set(names)) != len(names):
        raise RuntimeError(f"an AOTI entry bundles two files with one name: {sorted(names)}")
    home = kernel_dir / _entry_home(files)
    home.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    for old, data in files.items():
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
