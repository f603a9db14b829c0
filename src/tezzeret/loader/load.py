"""Load a verified artifact into a trainable module (Kasmina's side). Never compiles.

Owns: the order of checks before any payload byte is deserialised (framing and manifest, then the
signature, then torch / Python / target / format compatibility, then every payload's SHA-256 and the
IR's digest), building the module from the manifest's IR, and `KernelModule`, which dispatches each
call to the compiled entry whose guards accept it (a static entry for its exact shapes, a
dynamic-batch entry for every batch in its range; or eager where the manifest says eager is
faster). Must never call `torch.compile`, generate code, or run a C++ compiler: a call no entry
serves raises `NoMatchingEntry` or runs eager, as the caller chose, except a batch outside the
blueprint's declared range, which is always refused (`BatchOutOfRange`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from tezzeret.compile import artifact, target
from tezzeret.leyline import pb
from tezzeret.loader.errors import (
    ArtifactCorrupt,
    BatchOutOfRange,
    BlueprintMismatch,
    IncompatibleArtifact,
    NoMatchingEntry,
    SignatureInvalid,
    UnsignedArtifact,
)

Fallback = Literal["error", "eager"]
# "auto" follows each entry's `serve_compiled` (eager where eager was measured faster);
# "compiled" serves every compiled entry regardless (benchmarks, and proving compiled code runs).
Serve = Literal["auto", "compiled"]
_KNOWN_FORMATS = (
    "dynamo-aot-precompile+aoti/torch-2.13",
    "dynamo-aot-precompile+aoti+symint-io/torch-2.13",  # a dynamic-batch entry
)
_DTYPE_NAMES = {
    pb.DTYPE_FLOAT32: torch.float32,
    pb.DTYPE_FLOAT16: torch.float16,
    pb.DTYPE_BFLOAT16: torch.bfloat16,
    pb.DTYPE_FLOAT64: torch.float64,
    pb.DTYPE_INT64: torch.int64,
    pb.DTYPE_INT32: torch.int32,
    pb.DTYPE_BOOL: torch.bool,
}


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact whose signature (when checked), compatibility and payload digests all passed."""

    path: Path
    manifest: pb.CompiledKernelArtifact
    payloads: dict[str, bytes]
    signed: bool


def default_kernel_dir() -> Path:
    """Where entries' native libraries are re-homed: per user, private (0700)."""
    base = Path(tempfile.gettempdir()) / f"tezzeret-kernels-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        # Someone else owns or can write it: never dlopen from there.
        return Path(tempfile.mkdtemp(prefix="tezzeret-kernels-"))
    return base


def check_compatible(manifest: pb.CompiledKernelArtifact, where: object = "artifact") -> None:
    """Refuse an artifact built for another torch, Python, CPU target or payload format."""
    problems: list[str] = []
    if manifest.torch_version != target.torch_version():
        problems.append(f"built with torch {manifest.torch_version}, this process has {target.torch_version()}")
    if manifest.python_version != target.python_version():
        problems.append(
            f"built with Python {manifest.python_version}, this process runs {target.python_version()}"
        )
    ok, why = target.host_supports(manifest.target)
    if not ok:
        problems.append(why)
    for ref in manifest.payloads:
        if ref.name.startswith("entry/") and ref.format not in _KNOWN_FORMATS:
            problems.append(f"payload {ref.name!r} has format {ref.format!r}, this loader reads {_KNOWN_FORMATS}")
    if problems:
        raise IncompatibleArtifact(
            f"{where} ({manifest.artifact_id}): " + "; ".join(problems)
            + "; recompile the blueprint on this toolchain (or serve it eager)"
        )


def open_artifact(
    path: str | Path, *, public_key: bytes | None = None, require_signature: bool = False
) -> VerifiedArtifact:
    """Every check that can refuse an artifact, in order; deserialises nothing."""
    from tezzeret.blueprint import BlueprintRejected, digest

    path = Path(path)
    header = artifact.read_header(path)
    manifest = header.manifest
    signed = bool(header.signature.signature)
    if require_signature and not signed:
        raise UnsignedArtifact(f"artifact {path} is unsigned and a signature is required; sign it in the forge")
    if require_signature and public_key is None:
        raise UnsignedArtifact("a signature is required but no public key was given to check it with")
    if public_key is not None and (signed or require_signature):
        from tezzeret.store.signing import verify_signature

        if not verify_signature(public_key, header.manifest_bytes, header.signature):
            raise SignatureInvalid(
                f"artifact {path}: signature (key {header.signature.key_id or 'none'}) does not verify "
                "with the given public key; the manifest was altered or signed by another key"
            )
    check_compatible(manifest, path)
    payloads = artifact.read_payloads(path, header)
    try:
        actual = digest(manifest.blueprint)
    except BlueprintRejected as exc:
        raise ArtifactCorrupt(path, f"the embedded blueprint does not validate ({exc})") from None
    if actual != manifest.blueprint_digest:
        raise BlueprintMismatch(
            f"artifact {path}: manifest names blueprint {manifest.blueprint_digest[:16]} but embeds "
            f"{actual[:16]}; refuse it and recompile"
        )
    return VerifiedArtifact(path, manifest, payloads, signed)


def _describe(shapes: list[tuple[tuple[int | str, ...], Any]], grad: bool) -> str:
    parts = ", ".join(f"({', '.join(str(x) for x in s)}{',' if len(s) == 1 else ''}) "
                      f"{str(d).replace('torch.', '')}" for s, d in shapes)
    return f"[{parts}] {'train' if grad else 'no_grad'}"


@dataclass(frozen=True)
class _Entry:
    record: pb.ArtifactEntry
    shapes: tuple[tuple[tuple[int, ...], torch.dtype | None], ...]
    compiled: Any  # precompile.CompiledEntry, or None when the manifest says serve eager
    # Per input, the dims that carry the batch (a dynamic-batch entry; empty tuples when static).
    batch_dims: tuple[tuple[int, ...], ...] = ()

    def prefilter(self, args: tuple[Any, ...], grad: bool) -> bool:
        if self.record.grad_enabled != grad or len(args) != len(self.shapes):
            return False
        dynamic = self.record.dynamic_batch
        lo, hi = self.record.batch_min, self.record.batch_max
        for i, (a, (shape, dtype)) in enumerate(zip(args, self.shapes, strict=True)):
            if not isinstance(a, torch.Tensor) or (dtype and a.dtype != dtype):
                return False
            if not dynamic:
                if tuple(a.shape) != shape:
                    return False
                continue
            if a.dim() != len(shape):
                return False
            flexible = self.batch_dims[i]
            for d, (got, want) in enumerate(zip(a.shape, shape, strict=True)):
                if d in flexible:
                    if not lo <= got <= hi:
                        return False
                elif got != want:
                    return False
        return True

    def describe(self) -> str:
        if not self.record.dynamic_batch:
            return _describe(list(self.shapes), self.record.grad_enabled)
        span = f"{self.record.batch_min}..{self.record.batch_max}"
        shapes = [
            (tuple(span if d in dims else x for d, x in enumerate(shape)), dtype)
            for (shape, dtype), dims in zip(self.shapes, self.batch_dims, strict=True)
        ]
        return _describe(shapes, self.record.grad_enabled)


class KernelModule(nn.Module):
    """A blueprint module with compiled entries attached; parameters are the inner module's own.

    `forward` serves each call from the entry whose guards accept it. Where no entry does, it runs
    eager (`fallback="eager"`) or raises `NoMatchingEntry` naming what the artifact supports.
    """

    def __init__(self, module: nn.Module, *, fallback: Fallback = "error") -> None:
        super().__init__()
        self.module = module
        self.fallback: Fallback = fallback
        self._entries: tuple[_Entry, ...] = ()
        self.artifact_id: str | None = None
        # The blueprint's declared batch range and where the batch sits ((input, dim) pairs);
        # None for a static blueprint or before an artifact is attached.
        self.batch_range: tuple[int, int] | None = None
        self._batch_dims: tuple[tuple[int, int], ...] = ()
        self.num_threads = 0  # the thread count the attached entries were compiled under
        self.calls_compiled = 0
        self.calls_eager = 0

    @property
    def entries(self) -> list[pb.ArtifactEntry]:
        return [e.record for e in self._entries]

    @property
    def compiled(self) -> bool:
        return any(e.compiled is not None for e in self._entries)

    def attach(
        self, verified: VerifiedArtifact, *, kernel_dir: Path | None = None, serve: Serve = "auto"
    ) -> None:
        """Deserialise `verified`'s entries and switch to them (one atomic swap of the table)."""
        from tezzeret.blueprint import batch_dims, batch_range
        from tezzeret.compile import precompile

        kernel_dir = kernel_dir or default_kernel_dir()
        entries: list[_Entry] = []
        for record in verified.manifest.entries:
            shapes = tuple((tuple(int(x) for x in t.shape), _DTYPE_NAMES.get(t.dtype)) for t in record.inputs)
            flexible = tuple(tuple(int(d) for d in t.batch_dims) for t in record.inputs)
            compiled = None
            name = f"entry/{record.key}"
            wanted = record.serve_compiled or serve == "compiled"
            if wanted and name in verified.payloads:
                try:
                    compiled = precompile.load_entry(verified.payloads[name], kernel_dir=kernel_dir)
                except Exception as exc:  # noqa: BLE001 - torch refuses in many ways; name the entry
                    raise IncompatibleArtifact(
                        f"artifact {verified.path}: entry {record.key} could not be loaded "
                        f"({type(exc).__name__}: {str(exc)[:300]}); recompile on this toolchain"
                    ) from exc
            entries.append(_Entry(record, shapes, compiled, flexible))
        # Exact static entries first: the compiler kept them only where they beat the dynamic one.
        entries.sort(key=lambda e: e.record.dynamic_batch)
        lo, hi = batch_range(verified.manifest.blueprint)
        where = batch_dims(verified.manifest.blueprint)
        self._batch_dims = where
        self.batch_range = (lo, hi) if where else None
        self._entries = tuple(entries)
        self.artifact_id = verified.manifest.artifact_id
        self.num_threads = int(verified.manifest.num_threads)

    def detach(self) -> None:
        """Back to eager for every call."""
        self._entries = ()
        self.artifact_id = None
        self.batch_range = None
        self._batch_dims = ()

    def _out_of_range(self, args: tuple[Any, ...]) -> BatchOutOfRange | None:
        if self.batch_range is None:
            return None
        lo, hi = self.batch_range
        for i, d in self._batch_dims:
            a = args[i] if i < len(args) else None
            if isinstance(a, torch.Tensor) and a.dim() > d and not lo <= a.shape[d] <= hi:
                return BatchOutOfRange(
                    f"batch {a.shape[d]} (input {i}, dim {d}, shape {tuple(a.shape)}) is outside the "
                    f"declared batch range [{lo}, {hi}] of artifact {self.artifact_id}: nothing was "
                    f"verified at that size, so neither compiled entries nor eager serve it; split "
                    f"the batch into pieces of {lo} to {hi}, or widen the blueprint's range and recompile"
                )
        return None

    def forward(self, *args: Any) -> Any:
        grad = torch.is_grad_enabled()
        entries = self._entries
        for entry in entries:
            if not entry.prefilter(args, grad):
                continue
            if entry.compiled is None:
                self.calls_eager += 1
                return self.module(*args)
            if entry.compiled.matches(self.module, args):
                self.calls_compiled += 1
                return entry.compiled(self.module, *args)
        refused = self._out_of_range(args)
        if refused is not None:
            raise refused
        if self.fallback == "eager":
            self.calls_eager += 1
            return self.module(*args)
        shapes = [(tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else ((), type(a)) for a in args]
        supported = "; ".join(e.describe() for e in entries) or "none"
        threads = ""
        if self.num_threads and torch.get_num_threads() != self.num_threads and any(
            e.compiled is not None and e.prefilter(args, grad) for e in entries
        ):
            threads = (
                f"; the entries were compiled for {self.num_threads} intra-op thread(s) and this "
                f"process uses {torch.get_num_threads()} (torch guards on it): call "
                f"torch.set_num_threads({self.num_threads}) or compile with that thread count"
            )
        raise NoMatchingEntry(
            f"no entry of artifact {self.artifact_id or '(none attached)'} serves inputs "
            f"{_describe(shapes, grad)} (module in {'train' if self.module.training else 'eval'} mode); "
            f"it supports: {supported}; call with one of those, or load with fallback='eager'{threads}"
        )


def prewarm() -> None:
    """Import everything loading an artifact needs (torch's Dynamo and AOTI runtime, the blueprint
    builder, signature checks) ahead of the first load: seconds, once per process."""
    import tezzeret.blueprint.module  # noqa: F401
    import tezzeret.store.signing  # noqa: F401
    from tezzeret.blueprint import digest  # noqa: F401
    from tezzeret.compile import precompile

    precompile.prewarm()


def load(
    path: str | Path,
    *,
    public_key: bytes | None = None,
    require_signature: bool = False,
    fallback: Fallback = "error",
    kernel_dir: str | Path | None = None,
    serve: Serve = "auto",
) -> KernelModule:
    """Verify, then load the artifact at `path`: a module whose optimizer trains its parameters."""
    from tezzeret.blueprint import build_module

    verified = open_artifact(path, public_key=public_key, require_signature=require_signature)
    module = KernelModule(build_module(verified.manifest.blueprint), fallback=fallback)
    module.attach(verified, kernel_dir=Path(kernel_dir) if kernel_dir else None, serve=serve)
    return module
