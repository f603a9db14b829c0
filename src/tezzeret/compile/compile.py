"""Compile one blueprint in-process: IR → module → entries per tier → verified artifact file.

Owns: planning the entries a tier builds (a dynamic-batch entry per grad mode over the IR's batch
range, static entries where the tier asks for them or the dynamic entry fails), compiling each
(through `precompile`), verifying each (through `verify`: a dynamic entry at the range's ends, the
example batch and a batch no static tier builds), keeping a static entry beside a dynamic one only
where it was measured faster, dropping and recording failures, and writing the artifact (through
`artifact`).
Takes everything it needs as arguments and writes only under `out_dir` (plus Inductor's cache dir
when one is given): it runs inside a sandbox worker. Must never fork, set resource limits or talk
to the store or the bus.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING, Literal

from tezzeret.artifact import file as artifact
from tezzeret.artifact import target as targets
from tezzeret.artifact.codeversion import blueprint_code_version
from tezzeret.blueprint.dtypes import from_torch
from tezzeret.compile import identity
from tezzeret.compile.errors import BudgetExceeded, CompileFailed, VerificationFailed
from tezzeret.compile.identity import toolchain_for_tier
from tezzeret.compile.tiers import TIERS, BatchMode, Tier, batch_sizes_for, tier_for
from tezzeret.leyline import codec, pb

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tezzeret.compile import verify

# torch is imported inside the functions that run a compile: the forge imports this module for
# artifact ids and toolchain hashes and must not pay for (or depend on) torch.

Progress = Callable[[str, int, int], None]  # (what is happening, entries done, entries planned)

# Relative slack under the tier budget we keep free for verification and writing the file.
_BUDGET_RESERVE = 0.15
# A static entry is kept beside its grad mode's dynamic entry only when it is at least this much
# faster at its batch: the torch notes measure differences under 10% as noise on these machines.
_STATIC_MARGIN = 0.10

# "entry": kept when verified. "fallback": a static entry built only when its grad mode's dynamic
# entry was not verified. "rival": a static entry built beside the dynamic one and kept only when
# that one was not verified or is measurably slower at this batch.
Role = Literal["entry", "fallback", "rival"]


class TierDeadline(BaseException):
    """The tier's wall-clock deadline passed in the middle of an entry. A BaseException so no
    `except Exception` inside torch swallows it; `compile_blueprint` catches it."""


@contextlib.contextmanager
def _cut_off_after(seconds: float | None) -> Iterator[None]:
    """Raise `TierDeadline` in this (main) thread once `seconds` have passed (SIGALRM); a no-op
    off the main thread or without a limit. Used inside sandbox workers, where a cut-off compile
    is followed by recycling the worker (torch's state after an interrupted compile is not trusted)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TierDeadline()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class EntrySpec:
    batch: int  # the batch the entry is traced and measured at (a dynamic entry's example batch)
    grad_enabled: bool
    batch_min: int = 0  # batch_max > 0: a dynamic entry serving [batch_min, batch_max]
    batch_max: int = 0
    role: Role = "entry"

    @property
    def dynamic(self) -> bool:
        return self.batch_max > 0

    @property
    def mode(self) -> str:
        return "train" if self.grad_enabled else "nograd"

    @property
    def key(self) -> str:
        if self.dynamic:
            return f"b{self.batch_min}-{self.batch_max}-{self.mode}"
        return f"b{self.batch}-{self.mode}"


@dataclass
class CompileOutcome:
    path: Path
    manifest: pb.CompiledKernelArtifact
    compile_ms: float
    peak_rss_bytes: int
    dropped: list[pb.ArtifactEntry] = field(default_factory=list)
    # An entry was cut off at the tier's deadline (torch was interrupted mid-compile).
    cut_off: bool = False
    # Eager forward+backward ms at the example batch, measured beside a kept training entry (the
    # forge's payback predictor turns speed-ups into time saved per step with it); None if none.
    eager_train_ms: float | None = None

    @property
    def artifact_id(self) -> str:
        return self.manifest.artifact_id

    @property
    def entries(self) -> list[pb.ArtifactEntry]:
        return list(self.manifest.entries)


def _as_ir(ir_or_bytes: pb.BlueprintIR | bytes | str | Path) -> pb.BlueprintIR:
    from tezzeret.blueprint import load_blueprint, validate

    ir = ir_or_bytes if isinstance(ir_or_bytes, pb.BlueprintIR) else load_blueprint(ir_or_bytes)
    validate(ir)
    return ir


def plan_entries(ir: pb.BlueprintIR, tier: Tier, batch_sizes: list[int] | None = None) -> list[EntrySpec]:
    """The entries `tier` builds; explicit `batch_sizes` ask for static entries at those sizes.

    For an IR with a batch range, an Inductor tier whose batch mode is not static plans one
    dynamic entry per grad mode over the whole range, then its batch policy's sizes as static
    fallbacks (`BatchMode.DYNAMIC`) or rivals (`BatchMode.COMPARE`).
    """
    from tezzeret.blueprint import batch_range

    lo, hi = batch_range(ir)
    declared = _example_batch(ir)
    if batch_sizes:
        sizes = sorted({int(b) for b in batch_sizes if lo <= int(b) <= hi})
        if not sizes:
            raise CompileFailed(
                f"batch sizes {sorted(set(batch_sizes))} are all outside the blueprint's batch "
                f"range [{lo}, {hi}]; ask for sizes inside it"
            )
        return [EntrySpec(b, g) for g in tier.grad_modes for b in sizes]
    sizes = batch_sizes_for(tier, declared, lo, hi)
    # Training entries first: they are what Kasmina needs, so a tight budget spends itself on them.
    if not tier.use_inductor or tier.batch_mode is BatchMode.STATIC or lo == hi:
        return [EntrySpec(b, g) for g in tier.grad_modes for b in sizes]
    role: Role = "rival" if tier.batch_mode is BatchMode.COMPARE else "fallback"
    # Every dynamic entry before any static one: each covers the whole range on its own.
    return [EntrySpec(declared, g, lo, hi) for g in tier.grad_modes] + [
        EntrySpec(b, g, role=role) for g in tier.grad_modes for b in sizes
    ]


def _example_batch(ir: pb.BlueprintIR) -> int:
    from tezzeret.blueprint import batch_dims, example_inputs

    if not ir.inputs:
        return 1
    where = batch_dims(ir)
    i, d = where[0] if where else (0, 0)
    return int(example_inputs(ir)[i].shape[d])


def unplanned_batch(declared: int, lo: int, hi: int) -> int | None:
    """A batch in [lo, hi] that no tier's static plan builds (nearest the middle), or None.

    A dynamic entry is verified there too: proof that it serves sizes nobody compiled for.
    """
    planned: set[int] = set()
    for tier in TIERS:
        planned.update(batch_sizes_for(tier, declared, lo, hi))
    middle = (lo + hi + 1) // 2
    free = [b for b in range(lo, hi + 1) if b not in planned]
    return min(free, key=lambda b: (abs(b - middle), b)) if free else None


def verification_batches(ir: pb.BlueprintIR) -> list[int]:
    """Where a dynamic entry of `ir` is checked against eager: min, example, max and one unplanned."""
    from tezzeret.blueprint import batch_range

    lo, hi = batch_range(ir)
    declared = _example_batch(ir)
    extra = unplanned_batch(declared, lo, hi)
    return sorted({lo, declared, hi} | ({extra} if extra is not None else set()))


def _inputs_for(ir: pb.BlueprintIR, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """The IR's example inputs at `batch`, drawn on the CPU (the same values for every target) and
    placed on `device`."""
    import torch

    from tezzeret.blueprint import example_inputs

    torch.manual_seed(0)
    return tuple(t.to(device) for t in example_inputs(ir, batch))


def resolve_target(target: str | None) -> tuple[pb.TargetSpec, torch.device]:
    """The spec an artifact for `target` records, and the torch device its entries run on.

    `target` is "cpu", "cuda" or a target string (`cpu-x86_64-avx2`, `cuda-sm90[-cu130]`); None is
    the CPU. A CUDA target is this process's current CUDA device, which must match what the string
    names (compute capability, CUDA version): ids are computed before the compile, so a worker that
    built for another GPU would hand back an artifact nobody asked for. Raises `TargetUnavailable`.
    """
    import torch

    from tezzeret.artifact.errors import TargetUnavailable

    wanted = (target or "cpu").strip()
    if not wanted.startswith("cuda"):
        return identity.host_target("cpu"), torch.device("cpu")
    index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    spec = identity.host_target("cuda", index)
    if wanted != "cuda":
        try:
            asked = targets.parse_target(wanted)
        except ValueError as exc:
            raise TargetUnavailable(str(exc)) from None
        for what, want, have in (
            ("compute capability", asked.compute_capability, spec.compute_capability),
            ("CUDA version", asked.cuda_version, spec.cuda_version),
        ):
            if want and want != have:
                raise TargetUnavailable(
                    f"target {wanted} asks for {what} {want}; this worker's cuda:{index} "
                    f"({spec.device_name or 'GPU'}) has {have}: route the job to a node with that GPU"
                )
    return spec, torch.device("cuda", index)


def _entry_record(
    spec: EntrySpec, args: tuple[torch.Tensor, ...], dims: tuple[tuple[int, int], ...] = ()
) -> pb.ArtifactEntry:
    entry = pb.ArtifactEntry(key=spec.key, grad_enabled=spec.grad_enabled)
    for i, t in enumerate(args):
        tensor = entry.inputs.add(shape=list(t.shape), dtype=from_torch(t.dtype))
        if spec.dynamic:
            tensor.batch_dims.extend(d for j, d in dims if j == i)
    if spec.dynamic:
        entry.dynamic_batch = True
        entry.batch_min = spec.batch_min
        entry.batch_max = spec.batch_max
    return entry


def _peak_rss_bytes() -> int:
    # Linux reports KiB. Children covers the C++ compiler processes Inductor runs.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int((own + kids) * 1024)


@dataclass
class _Built:
    record: pb.ArtifactEntry
    payload: bytes | None
    guard_digest: str
    runner: verify.Runner | None = None  # the loaded entry, for comparing a rival against it
    batch: int = 0  # the batch it was measured at
    eager_train_ms: float = 0.0  # eager forward+backward at that batch (training entries)


def _build_inductor_entry(
    tier: Tier,
    make_module: Callable[[], nn.Module],
    spec: EntrySpec,
    args: tuple[torch.Tensor, ...],
    kernel_dir: Path,
    ir: pb.BlueprintIR,
) -> _Built:
    """Compile, reload and verify one entry; a dynamic one at every batch of `verification_batches`."""
    from tezzeret.artifact import payload
    from tezzeret.blueprint import batch_dims
    from tezzeret.compile import precompile, verify

    device = args[0].device if args else None
    dims = batch_dims(ir) if spec.dynamic else ()
    record = _entry_record(spec, args, dims)
    dynamic = precompile.DynamicBatch(dims, spec.batch_min, spec.batch_max) if spec.dynamic else None
    try:
        compiled = precompile.compile_entry(
            make_module(), args, grad_enabled=spec.grad_enabled,
            options=tier.options_for(device.type if device is not None else "cpu"), dynamic=dynamic
        )
        data = compiled.serialize()
        # Verify what a consumer will get: the serialised bytes loaded back, not the in-memory object.
        loaded = payload.load_entry(data, kernel_dir=kernel_dir)
    except Exception as exc:  # noqa: BLE001 - any torch failure drops this entry, not the job
        record.verified = False
        record.drop_reason = f"compile failed: {type(exc).__name__}: {str(exc).strip()[:400]}"
        return _Built(record, None, "")
    run = verify.entry_runner(loaded)
    batches = verification_batches(ir) if spec.dynamic else [spec.batch]
    for batch in batches:
        at = f" at batch {batch}" if spec.dynamic else ""
        batch_args = args if batch == spec.batch else _inputs_for(ir, batch, device or "cpu")
        try:
            parity = verify.check_parity(make_module, run, batch_args, grad_enabled=spec.grad_enabled)
        except Exception as exc:  # noqa: BLE001 - an entry that cannot run is dropped like one that runs wrong
            record.verified = False
            record.drop_reason = (
                f"parity vs eager failed{at}: the entry raised {type(exc).__name__}: {str(exc).strip()[:400]}"
            )
            return _Built(record, None, "")
        record.max_abs_error = max(record.max_abs_error, parity.max_abs_error)
        record.max_rel_error = max(record.max_rel_error, parity.max_rel_error)
        if not parity.passed:
            record.verified = False
            record.drop_reason = f"parity vs eager failed{at}: {parity.reason}"
            return _Built(record, None, "")
    if spec.dynamic:
        record.verified_batches.extend(batches)
    speed = verify.measure_speed(make_module, run, args, grad_enabled=spec.grad_enabled)
    record.verified = True
    record.speedup_fwd = speed.speedup_fwd
    record.speedup_train = speed.speedup_train
    if spec.dynamic:
        # A dynamic entry serves its whole range, so it is judged by the slowest of its example
        # batch and both ends: at its example batch alone, token_embedding_pool_256 at FAST was
        # 1.23x eager and then served at 0.63x at batches 1 and 8 (bench/tiers.py).
        measured = [f"b{spec.batch} {speed.speedup_train if spec.grad_enabled else speed.speedup_fwd:.2f}x"]
        for batch in sorted({min(batches), max(batches)} - {spec.batch}):
            at_batch = verify.measure_speed(
                make_module, run, _inputs_for(ir, batch, device or "cpu"), grad_enabled=spec.grad_enabled
            )
            record.speedup_fwd = min(record.speedup_fwd, at_batch.speedup_fwd)
            record.speedup_train = min(record.speedup_train, at_batch.speedup_train)
            measured.append(f"b{batch} {at_batch.speedup_train if spec.grad_enabled else at_batch.speedup_fwd:.2f}x")
        record.notes = "speed-up vs eager: " + ", ".join(measured) + "; the slowest decides"
    # Serve compiled code only when it is not slower than eager on this machine for this path.
    deciding = record.speedup_train if spec.grad_enabled else record.speedup_fwd
    record.serve_compiled = deciding >= 1.0
    return _Built(record, data, loaded.guard_digest(), run, spec.batch, speed.eager_train_ms)


def _judge_static(
    built: _Built,
    spec: EntrySpec,
    dynamic: _Built | None,
    make_module: Callable[[], nn.Module],
    args: tuple[torch.Tensor, ...],
) -> None:
    """Keep a verified rival or fallback only where its grad mode's dynamic entry does not serve
    as well; record why either way (a rival that loses is dropped)."""
    from tezzeret.compile import verify

    if dynamic is None:
        built.record.notes = "kept: no dynamic entry was built for this grad mode (tier budget)"
        return
    if not dynamic.record.verified:
        built.record.notes = (
            f"kept: the dynamic entry {dynamic.record.key} was dropped ({dynamic.record.drop_reason[:200]})"
        )
        return
    assert dynamic.runner is not None and built.runner is not None
    timing = verify.compare_runners(
        make_module, dynamic.runner, built.runner, args, grad_enabled=spec.grad_enabled
    )
    what = "forward+backward" if spec.grad_enabled else "forward"
    measured = (
        f"{what} at batch {spec.batch}: static/dynamic {timing.ratio:.2f} (median of "
        f"{len(timing.ratios)} paired rounds, upper quartile {timing.ratio_q75:.2f}; static "
        f"{statistics.median(timing.second_ms):.3f} ms, dynamic {dynamic.record.key} "
        f"{statistics.median(timing.first_ms):.3f} ms)"
    )
    # Faster by the margin in the median round, and faster in three rounds of four.
    if timing.ratio < 1.0 - _STATIC_MARGIN and timing.ratio_q75 < 1.0:
        built.record.notes = f"kept: faster than the dynamic entry ({measured})"
        return
    built.record.verified = False
    built.record.drop_reason = (
        f"not measurably faster than the dynamic entry ({measured}); a static entry is kept beside "
        f"it only when at least {_STATIC_MARGIN:.0%} faster in the median round and faster in three "
        "rounds of four"
    )


def _build_eager_entry(
    make_module: Callable[[], nn.Module], spec: EntrySpec, args: tuple[torch.Tensor, ...]
) -> _Built:
    import torch

    from tezzeret.compile import verify

    record = _entry_record(spec, args)
    # EMERGENCY verifies the eager build itself: two builds from the IR's seed train identically
    # and produce finite values. No code is generated.
    parity = verify.check_parity(make_module, verify.eager_runner, args, grad_enabled=spec.grad_enabled)
    finite = all(
        bool(torch.isfinite(o).all())
        for o in verify._outputs(make_module()(*args))
        if o.is_floating_point()
    )
    record.max_abs_error = parity.max_abs_error
    record.max_rel_error = parity.max_rel_error
    if not parity.passed or not finite:
        record.verified = False
        record.drop_reason = (
            "eager build is not deterministic" if not parity.passed else "eager output is not finite"
        )
        return _Built(record, None, "")
    record.verified = True
    record.serve_compiled = False
    record.speedup_fwd = 1.0
    record.speedup_train = 1.0 if spec.grad_enabled else 0.0
    return _Built(record, None, "")


def compile_blueprint(
    ir_or_bytes: pb.BlueprintIR | bytes | str | Path,
    strategy: int | str | Tier,
    out_dir: str | Path,
    *,
    batch_sizes: list[int] | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    budget_s: float | None = None,
    grad_modes: tuple[bool, ...] | None = None,
    progress: Progress | None = None,
    hard_deadline: bool = False,
    strategy_requested: str | None = None,
    fallback_reason: str = "",
    target: str | None = None,
) -> CompileOutcome:
    """Compile, verify and package one blueprint; returns the written artifact's outcome.

    `strategy` is a tier's strategy value or name, or a `Tier` (a variant of one).
    `grad_modes` narrows the tier's grad modes (True = training entries, False = `no_grad`).
    The budget (`budget_s`, default the tier's) counts from the first entry; with `hard_deadline`
    an entry still running when it ends is cut off (the artifact keeps what verified before) and
    the outcome says so in `cut_off`.
    `target` ("cpu", "cuda" or a target string; default the CPU) decides where the module and its
    example inputs live while entries compile and verify against eager (`resolve_target`).
    Raises `UnsupportedTorch` outside the supported torch range, `TargetUnavailable` for a target
    this process cannot build, `BlueprintRejected` for an invalid IR, `VerificationFailed` when no entry passes parity,
    `CompileFailed` when torch could not compile any entry.
    """
    import torch

    from tezzeret.artifact.payload import require_supported_torch
    from tezzeret.blueprint import batch_dims, build_module, digest

    started = time.perf_counter()
    require_supported_torch(str(torch.__version__))
    from tezzeret.compile.precompile import DYNAMIC_PAYLOAD_FORMAT, PAYLOAD_FORMAT

    targets.ensure_pinned_isa()
    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir).resolve())
    if threads is not None:
        torch.set_num_threads(int(threads))
    tier = tier_for(strategy)
    budget = float(budget_s if budget_s is not None else tier.budget_s)
    ir = _as_ir(ir_or_bytes)
    blueprint_digest = digest(ir)
    target_spec, device = resolve_target(target)
    toolchain = toolchain_for_tier(tier, target_spec)
    artifact_id = identity.artifact_id(blueprint_digest, tier, target_spec)
    specs = plan_entries(ir, tier, batch_sizes)
    if grad_modes is not None:
        specs = [s for s in specs if s.grad_enabled in grad_modes] or specs

    def make_module() -> nn.Module:
        return build_module(ir).to(device)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept: list[_Built] = []
    dropped: list[pb.ArtifactEntry] = []
    cut_off = False
    # The budget covers the entries (parsing and validation above take milliseconds).
    entries_started = time.perf_counter()
    dynamic_by_mode: dict[bool, _Built] = {}
    with tempfile.TemporaryDirectory(prefix=".kernels-", dir=out_dir) as scratch:
        for done, spec in enumerate(specs):
            elapsed = time.perf_counter() - entries_started
            dynamic = dynamic_by_mode.get(spec.grad_enabled)
            if spec.role == "fallback" and dynamic is not None and dynamic.record.verified:
                continue  # the dynamic entry serves this batch; nothing to build
            if cut_off:
                record = _entry_record(spec, _inputs_for(ir, spec.batch, device))
                record.drop_reason = f"not started: the tier's {budget:.0f} s deadline had passed"
                dropped.append(record)
                continue
            args = _inputs_for(ir, spec.batch, device)
            if not kept and elapsed > budget:
                raise BudgetExceeded(
                    f"blueprint {blueprint_digest[:16]} ({tier.name}): {elapsed:.1f} s spent, budget "
                    f"{budget:.0f} s, and no entry verified yet; retry on an idle machine or use a "
                    "cheaper tier"
                )
            if kept and elapsed > budget * (1.0 - _BUDGET_RESERVE):
                record = _entry_record(spec, args, batch_dims(ir))
                record.drop_reason = f"tier budget of {budget:.0f} s reached after {elapsed:.1f} s"
                dropped.append(record)
                continue
            if progress:
                progress(f"{'compiling' if tier.use_inductor else 'verifying'} {spec.key}", done, len(specs))
            try:
                with _cut_off_after(budget - elapsed if hard_deadline else None):
                    if tier.use_inductor:
                        built = _build_inductor_entry(tier, make_module, spec, args, Path(scratch), ir)
                    else:
                        built = _build_eager_entry(make_module, spec, args)
                    if spec.dynamic:
                        dynamic_by_mode[spec.grad_enabled] = built
                    elif spec.role != "entry" and built.record.verified:
                        _judge_static(built, spec, dynamic, make_module, args)
            except TierDeadline:
                cut_off = True
                record = _entry_record(spec, args)
                record.drop_reason = f"cut off at the tier's {budget:.0f} s deadline"
                dropped.append(record)
                if not kept:
                    raise BudgetExceeded(
                        f"blueprint {blueprint_digest[:16]} ({tier.name}): cut off at the tier's {budget:.0f} s "
                        "deadline with no entry verified; a cheaper tier may fit"
                    ) from None
                continue
            if built.record.verified:
                kept.append(built)
            else:
                dropped.append(built.record)
        if progress:
            progress("writing artifact", len(specs), len(specs))
    if not kept:
        reasons = [f"{d.key}: {d.drop_reason}" for d in dropped]
        if dropped and all(d.drop_reason.startswith("compile failed") for d in dropped):
            raise CompileFailed(
                f"blueprint {blueprint_digest[:16]} ({tier.name}): no entry compiled; " + "; ".join(reasons)
            )
        raise VerificationFailed(
            f"blueprint {blueprint_digest[:16]} ({tier.name}): no entry passed verification "
            "against eager, so no artifact was written; " + "; ".join(reasons),
            reasons=reasons,
        )

    manifest = pb.CompiledKernelArtifact(
        schema_version=codec.SCHEMA_VERSION,
        artifact_id=artifact_id,
        blueprint_digest=blueprint_digest,
        strategy=tier.strategy.pb,
        target=toolchain.target,
        toolchain_hash=toolchain.hash(),
        torch_version=targets.torch_build(),
        python_version=toolchain.python_version,
        compile_code_version=toolchain.compile_code_version,
        blueprint_code_version=blueprint_code_version(),
        tier_settings=toolchain.tier_settings,
        status=pb.KERNEL_PENDING_BENCHMARKING,
        created_at_ns=time.time_ns(),
        num_threads=torch.get_num_threads(),
    )
    manifest.blueprint.CopyFrom(ir)
    manifest.target_spec.CopyFrom(target_spec)
    if strategy_requested and tier_for(strategy_requested) is not tier:
        # The forge's fallback ladder served this tier instead of the one asked for.
        manifest.strategy_requested = tier_for(strategy_requested).strategy.pb
        manifest.fallback_reason = fallback_reason
    manifest.applied_passes.extend(
        ["dynamo-aot-precompile", "inductor", "aoti-packaging"] if tier.use_inductor else ["eager"]
    )
    payloads: dict[str, bytes] = {}
    formats: dict[str, str] = {}
    guards = hashlib.sha256()
    for built in kept:
        manifest.entries.add().CopyFrom(built.record)
        if built.payload is not None:
            name = f"entry/{built.record.key}"
            payloads[name] = built.payload
            formats[name] = DYNAMIC_PAYLOAD_FORMAT if built.record.dynamic_batch else PAYLOAD_FORMAT
            guards.update(f"{built.record.key}:{built.guard_digest}\n".encode())
    manifest.guard_digest = guards.hexdigest()
    stats = manifest.stats
    stats.dropped_entries.extend(dropped)
    stats.max_parity_error = max(e.max_abs_error for e in manifest.entries)
    stats.speedup_fwd = min(e.speedup_fwd for e in manifest.entries)
    train = [e.speedup_train for e in manifest.entries if e.grad_enabled]
    stats.speedup_train = min(train) if train else 0.0
    stats.peak_rss_bytes = _peak_rss_bytes()
    stats.compile_ms = (time.perf_counter() - started) * 1000.0
    path = out_dir / f"{artifact_id}{artifact.SUFFIX}"
    written = artifact.write_artifact(path, manifest, payloads, formats=formats)
    declared = _example_batch(ir)
    eager_ms = [b.eager_train_ms for b in kept if b.record.grad_enabled and b.eager_train_ms > 0]
    at_example = [b.eager_train_ms for b in kept if b.record.grad_enabled and b.eager_train_ms > 0 and b.batch == declared]
    return CompileOutcome(
        path=path,
        manifest=written,
        compile_ms=stats.compile_ms,
        peak_rss_bytes=stats.peak_rss_bytes,
        dropped=list(dropped),
        cut_off=cut_off,
        eager_train_ms=(at_example or eager_ms)[0] if (at_example or eager_ms) else None,
    )
