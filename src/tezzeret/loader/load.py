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

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from tezzeret.artifact import file as artifact
from tezzeret.artifact.target import Host, Preflight, preflight
from tezzeret.artifact.trust import TrustedKeys, default_keyring_path
from tezzeret.blueprint.dtypes import to_torch
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

log = logging.getLogger(__name__)

Fallback = Literal["error", "eager"]
# "auto" follows each entry's `serve_compiled` (eager where eager was measured faster);
# "compiled" serves every compiled entry regardless (benchmarks, and proving compiled code runs).
Serve = Literal["auto", "compiled"]
PublicKeys = bytes | str | Sequence[bytes | str] | None


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact whose signature, compatibility and payload digests all passed."""

    path: Path
    manifest: pb.CompiledKernelArtifact
    payloads: dict[str, bytes]
    # The trusted key that signed it; None only when loaded with `trust_unsigned=True`.
    signed_by: str | None
    preflight: Preflight

    @property
    def signed(self) -> bool:
        return self.signed_by is not None


def default_kernel_dir() -> Path:
    """Where entries' native libraries are re-homed: per user, private (0700)."""
    base = Path(tempfile.gettempdir()) / f"tezzeret-kernels-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        # Someone else owns or can write it: never dlopen from there.
        return Path(tempfile.mkdtemp(prefix="tezzeret-kernels-"))
    return base


def check_compatible(
    manifest: pb.CompiledKernelArtifact, where: object = "artifact", host: Host | None = None
) -> Preflight:
    """The preflight verdict against `host` (default: this process); raises `IncompatibleArtifact`
    with every reason when it cannot load."""
    verdict = preflight(manifest, host)
    if not verdict.loadable:
        raise IncompatibleArtifact(
            f"{where} ({manifest.artifact_id}): " + "; ".join(verdict.reasons)
            + "; recompile the blueprint on this toolchain (or serve it eager)"
        )
    if verdict.verdict == "not_optimal":
        log.info("%s (%s) loads, but is not optimal here: %s", where, manifest.artifact_id, "; ".join(verdict.reasons))
    return verdict


def _check_signature(path: Path, header: artifact.Header, keys: TrustedKeys, trust_unsigned: bool) -> str | None:
    sig = header.signature
    where = f"artifact {path} ({header.manifest.artifact_id or 'no id'})"
    if keys:
        if not sig.signature:
            raise UnsignedArtifact(
                f"{where} carries no signature, and trusted keys are configured ({keys.describe()}): it "
                "was never signed or its signature was stripped; fetch it from the forge again"
            )
        if keys.find(sig.key_id) is None:
            raise SignatureInvalid(
                f"{where} is signed by key {sig.key_id or '(none)'}, which is not trusted (trusted: "
                f"{keys.describe()}); if that key is your forge's, add it to the keyring "
                f"({default_keyring_path()} or $TEZZERET_KEYRING) or $TEZZERET_TRUSTED_KEYS"
            )
        signer = keys.verify(header.manifest_bytes, sig)
        if signer is None:
            raise SignatureInvalid(
                f"{where}: the signature by key {sig.key_id} does not verify; the manifest was altered "
                "after signing or the signature is broken: refuse it and fetch it from the forge again"
            )
        return signer.key_id
    if not trust_unsigned:
        raise UnsignedArtifact(
            f"{where}: no trusted public key is configured, so its signature cannot be checked; pass "
            "public_key= (the forge's key: GET /v1/keys/public or `tezzeret keys export`), set "
            f"$TEZZERET_TRUSTED_KEYS, or write it to {default_keyring_path()}; to run unverified "
            "code anyway, load with trust_unsigned=True"
        )
    log.warning("%s: loading WITHOUT a signature check (trust_unsigned=True): its code runs unverified", where)
    return None


def open_artifact(
    path: str | Path, *, public_key: PublicKeys = None, trust_unsigned: bool = False, host: Host | None = None
) -> VerifiedArtifact:
    """Every check that can refuse an artifact, in order; deserialises nothing but protobuf.

    The signature must verify with a trusted key (`public_key`, `$TEZZERET_TRUSTED_KEYS`, the
    keyring file); only with no key configured at all does `trust_unsigned=True` let an unsigned
    artifact through. Then the preflight (torch, Python, device, ISA, builder code, formats), every
    payload's SHA-256, and the embedded blueprint's digest. `host` is what the preflight compares
    with (default: this process, read when called).
    """
    from tezzeret.blueprint import BlueprintRejected, digest

    path = Path(path)
    header = artifact.read_header(path)
    manifest = header.manifest
    signed_by = _check_signature(path, header, TrustedKeys.of(public_key), trust_unsigned)
    verdict = check_compatible(manifest, path, host)
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
    return VerifiedArtifact(path, manifest, payloads, signed_by, verdict)


def _describe(shapes: Sequence[tuple[tuple[int | str, ...], Any]], grad: bool) -> str:
    parts = ", ".join(f"({', '.join(str(x) for x in s)}{',' if len(s) == 1 else ''}) "
                      f"{str(d).replace('torch.', '')}" for s, d in shapes)
    return f"[{parts}] {'train' if grad else 'no_grad'}"


@dataclass(frozen=True)
class _Entry:
    record: pb.ArtifactEntry
    shapes: tuple[tuple[tuple[int, ...], torch.dtype | None], ...]
    compiled: Any  # payload.CompiledEntry, or None when the manifest says serve eager
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
        from tezzeret.artifact import payload
        from tezzeret.blueprint import batch_dims, batch_range

        kernel_dir = kernel_dir or default_kernel_dir()
        entries: list[_Entry] = []
        for record in verified.manifest.entries:
            shapes = tuple(
                (tuple(int(x) for x in t.shape), to_torch(t.dtype) if t.dtype else None) for t in record.inputs
            )
            flexible = tuple(tuple(int(d) for d in t.batch_dims) for t in record.inputs)
            compiled = None
            name = f"entry/{record.key}"
            wanted = record.serve_compiled or serve == "compiled"
            if wanted and name in verified.payloads:
                try:
                    compiled = payload.load_entry(verified.payloads[name], kernel_dir=kernel_dir)
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
    from tezzeret.artifact import payload
    from tezzeret.blueprint import digest  # noqa: F401

    payload.prewarm()


def device_for(verified: VerifiedArtifact) -> torch.device:
    """Where a module built for `verified`'s entries must live: the CUDA device the preflight
    matched for a CUDA artifact, else the CPU."""
    if verified.preflight.device_index is not None:
        return torch.device("cuda", verified.preflight.device_index)
    return torch.device("cpu")


def load(
    path: str | Path,
    *,
    public_key: PublicKeys = None,
    trust_unsigned: bool = False,
    fallback: Fallback = "error",
    kernel_dir: str | Path | None = None,
    serve: Serve = "auto",
) -> KernelModule:
    """Verify, then load the artifact at `path`: a module whose optimizer trains its parameters.

    Safe by default: the artifact must be signed by a trusted key (see `open_artifact`);
    `trust_unsigned=True` is the explicit, logged opt-out for when no key is configured. The module
    of a CUDA artifact is on the CUDA device the preflight matched (`device_for`)."""
    from tezzeret.blueprint import build_module

    verified = open_artifact(path, public_key=public_key, trust_unsigned=trust_unsigned)
    module = KernelModule(build_module(verified.manifest.blueprint).to(device_for(verified)), fallback=fallback)
    module.attach(verified, kernel_dir=Path(kernel_dir) if kernel_dir else None, serve=serve)
    return module
