"""The payload formats an artifact's entries come in, and reading an entry back into torch.

Owns: the torch versions the precompile layer supports (`SUPPORTED_TORCH`, refusing others with
`UnsupportedTorch` at compile and load), the format names (`KNOWN_FORMATS`: one per torch minor
version this code reads), and the consumer side of torch's private precompile API (torch 2.13): `load_entry` deserialises one entry
with its bundled native files re-homed into a directory we choose, and `CompiledEntry` wraps the
result (guard check, call, serialise). The producer side (`torch.compile` with AOT precompile) is
`compile/precompile.py`; those two files are the only ones that touch torch's private APIs, so a
torch upgrade is ported there. Importing this module loads no torch; calling `load_entry` does.
Must never be handed bytes whose signature and SHA-256 have not been checked: deserialising runs
torch's pickle and dlopens native code.

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
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tezzeret.artifact.errors import UnsupportedTorch

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

# Torch minor versions whose precompiled entries this code reads (and `compile` writes): the ones
# the test suite runs on. 2.11 (the GPU machines' torch) stays out until bench/gpu_check.py has
# passed on it: the private API below could not be checked against 2.11's source here.
SUPPORTED_TORCH: tuple[str, ...] = ("2.13",)
# Naming a minor version here (comma-separated, e.g. "2.11") lets compile and load run on it
# untested, with a warning: how bench/gpu_check.py tests a candidate before it is claimed.
UNTESTED_TORCH_ENV = "TEZZERET_UNTESTED_TORCH"
FORMAT_PREFIX = "dynamo-aot-precompile+aoti/torch-"
# A dynamic-batch entry: loading it needs `adapt_symint_io`, which a loader that predates it lacks,
# so it carries its own name (such a loader refuses it instead of crashing in the runner).
DYNAMIC_FORMAT_PREFIX = "dynamo-aot-precompile+aoti+symint-io/torch-"
KNOWN_FORMATS: tuple[str, ...] = tuple(
    prefix + v for prefix in (FORMAT_PREFIX, DYNAMIC_FORMAT_PREFIX) for v in SUPPORTED_TORCH
)

# Set on a CompiledAOTI while a dynamic entry compiles and pickled with it: the positions of its
# runner's inputs and outputs that are SymInts in the graph (0-d int64 tensors in the .so).
SYMINT_INPUTS = "_tezzeret_symint_inputs"
SYMINT_OUTPUTS = "_tezzeret_symint_outputs"


def torch_minor(version: str) -> str:
    """`2.13` of `2.13.0+cu130`."""
    return ".".join(version.split("+", 1)[0].split(".")[:2])


def allowed_torch() -> tuple[str, ...]:
    """The supported minor versions plus those opted into with `$TEZZERET_UNTESTED_TORCH`."""
    extra = [v.strip() for v in os.environ.get(UNTESTED_TORCH_ENV, "").split(",") if v.strip()]
    return tuple(dict.fromkeys([*SUPPORTED_TORCH, *extra]))


def known_formats() -> tuple[str, ...]:
    """`KNOWN_FORMATS` plus the formats of opted-in untested torch versions."""
    return tuple(prefix + v for prefix in (FORMAT_PREFIX, DYNAMIC_FORMAT_PREFIX) for v in allowed_torch())


def unsupported_torch_reason(version: str) -> str | None:
    """Why torch `version` cannot compile or load precompiled entries here, or None when it can."""
    minor = torch_minor(version)
    if minor in allowed_torch():
        return None
    return (
        f"torch {version} is outside the range Tezzeret's precompiled entries support (torch "
        f"{', '.join(SUPPORTED_TORCH)}: the private precompile API differs between minor versions); "
        f"install torch=={SUPPORTED_TORCH[-1]}.*, or set {UNTESTED_TORCH_ENV}={minor} to try it untested"
    )


def require_supported_torch(version: str) -> None:
    """Raise `UnsupportedTorch` naming the supported range when `version` is outside it."""
    reason = unsupported_torch_reason(version)
    if reason is not None:
        raise UnsupportedTorch(reason)
    if torch_minor(version) not in SUPPORTED_TORCH:
        log.warning("torch %s is not tested with Tezzeret (%s=%s)", version, UNTESTED_TORCH_ENV,
                    os.environ.get(UNTESTED_TORCH_ENV))


# The private torch names the producer and consumer sides use, for `missing_private_api`.
_PRIVATE_API: tuple[tuple[str, str], ...] = (
    ("torch._dynamo.aot_compile", "AOTCompiledFunction.serialize"),
    ("torch._dynamo.aot_compile", "AOTCompiledFunction.deserialize"),
    ("torch._dynamo.aot_compile", "AOTCompiledFunction.guard_check"),
    ("torch._dynamo.aot_compile", "AOTCompiledFunction.prepare_f_locals"),
    ("torch._dynamo.aot_compile", "ModelInput"),
    ("torch._dynamo.config", "enable_aot_compile"),
    ("torch._dynamo.decorators", "mark_unbacked"),
    ("torch._inductor.output_code", "CompiledAOTI.__post_init__"),
    ("torch._inductor.codegen.cpp_wrapper_cpu", "CppWrapperCpu.generate_input_output_runtime_checks"),
    ("torch._inductor.codegen.cpp_wrapper_cpu", "CppWrapperCpu.codegen_model_constructor"),
    ("torch._inductor.config", "aot_inductor.embed_kernel_binary"),
    ("torch._guards", "TracingContext"),
)


def missing_private_api() -> list[str]:
    """The private torch names this code uses that the installed torch lacks (imports torch).

    A quick probe for a torch version not yet claimed: an empty list does not prove it works
    (signatures and behaviour may differ), a non-empty one proves it does not."""
    import importlib

    missing: list[str] = []
    for module_name, path in _PRIVATE_API:
        try:
            obj: Any = importlib.import_module(module_name)
            for part in path.split("."):
                obj = getattr(obj, part)
        except Exception:  # noqa: BLE001 - any failure to reach the name is what we report
            missing.append(f"{module_name}.{path}")
    return missing


def format_for(torch_version: str, *, dynamic: bool = False) -> str:
    """The payload format name an entry built by `torch_version` carries."""
    prefix = DYNAMIC_FORMAT_PREFIX if dynamic else FORMAT_PREFIX
    return prefix + torch_minor(torch_version)


# Guards the class-level patches of CompiledAOTI (here while entries load, in compile/precompile.py
# while one compiles); loads happen from a provider's background thread and the training thread at
# once.
REHOME_LOCK = threading.RLock()  # re-entrant: compile-time patches nest


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


def enable_aot_compile() -> None:
    import torch._dynamo.config as dynamo_config

    dynamo_config.enable_aot_compile = True


def adapt_symint_io(aoti: Any) -> None:
    """Wrap a loaded CompiledAOTI's runner so SymInt inputs go in as 0-d tensors and SymInt
    outputs come back as ints (what AOTAutograd's runtime passes and expects)."""
    import torch

    inputs = tuple(getattr(aoti, SYMINT_INPUTS, ()))
    outputs = tuple(getattr(aoti, SYMINT_OUTPUTS, ()))
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

    adapted._symint_adapted = True  # type: ignore[attr-defined]  # a marker on a plain function object
    aoti.current_callable = adapted


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
        adapt_symint_io(self)

    with REHOME_LOCK:
        CompiledAOTI.__post_init__ = post_init  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call
        try:
            yield
        finally:
            CompiledAOTI.__post_init__ = original  # type: ignore[method-assign]  # a torch private hook, patched under REHOME_LOCK for one call


def load_entry(data: bytes, *, kernel_dir: Path) -> CompiledEntry:
    """Deserialise one entry (runs torch's pickle and dlopens native code: verify bytes first)."""
    import torch
    from torch._dynamo.aot_compile import AOTCompiledFunction

    require_supported_torch(str(torch.__version__))
    enable_aot_compile()
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
