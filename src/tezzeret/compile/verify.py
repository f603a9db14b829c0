"""Parity and speed of one compiled entry against eager (the `kernel_validation` check).

Owns: the two-step SGD comparison (losses, every parameter gradient of both steps, final parameters
and buffers; outputs and buffers for `no_grad` entries) with tolerances fit for the dtype and the
device (`tolerance_for`: TF32, fp16 and bf16 on CUDA), and the forward / forward+backward timing
against eager (waiting for the device before each clock read). Must never compile, write files or decide whether
an artifact is produced: it reports, `compile.py` decides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tezzeret.artifact.payload import CompiledEntry

# (rtol, atol) per dtype: a tensor passes when max|a - b| <= atol + rtol * max|b|. Scaled by the
# tensor's own magnitude so that tiny gradients are not judged against an absolute floor only.
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (2e-3, 1e-5),
    torch.float16: (2e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}
# On a CUDA device. float32 under TF32 (matmuls when allowed; cuDNN convolutions by default) rounds
# every product's inputs to 10 mantissa bits (unit roundoff ~4.9e-4), and eager and compiled code
# accumulate in different orders and kernels (cuBLAS / cuDNN against Triton): five times the CPU
# rtol. fp16 and bf16: fused Triton kernels keep intermediates in fp32 where eager rounds every
# op's output, so a little wider than on CPU. Not yet checked on a GPU: bench/gpu_check.py reports
# the share of each tolerance the library used (`tolerance_used`).
_CUDA_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (2e-3, 1e-5),
    torch.float16: (3e-2, 2e-3),
    torch.bfloat16: (8e-2, 2e-2),
}
_TF32_TOLERANCE: tuple[float, float] = (1e-2, 1e-4)
_DEFAULT_TOLERANCE: tuple[float, float] = (2e-3, 1e-5)


def tf32_enabled(device_type: str) -> bool:
    """Whether float32 math on `device_type` may run as TF32 here: CUDA with TF32 allowed for
    matmuls or for cuDNN convolutions (torch allows the latter by default)."""
    if device_type != "cuda":
        return False
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


def tolerance_for(dtype: torch.dtype, device_type: str = "cpu", *, tf32: bool = False) -> tuple[float, float]:
    """(rtol, atol) for comparing a `dtype` tensor computed on `device_type` against eager's."""
    if device_type == "cuda":
        if dtype == torch.float32 and tf32:
            return _TF32_TOLERANCE
        return _CUDA_TOLERANCES.get(dtype, _DEFAULT_TOLERANCE)
    return _TOLERANCES.get(dtype, _DEFAULT_TOLERANCE)

Runner = Callable[[nn.Module, tuple[torch.Tensor, ...]], Any]


@dataclass
class ParityReport:
    passed: bool
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    # The largest max|a - b| / (atol + rtol * max|b|) over all compared tensors: <= 1 passes. Unlike
    # max_rel_error it is not blown up by tensors whose true value is ~0 (a conv bias before BN).
    tolerance_used: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.failures[:5])


@dataclass
class SpeedReport:
    eager_fwd_ms: float
    compiled_fwd_ms: float
    eager_train_ms: float = 0.0
    compiled_train_ms: float = 0.0

    @property
    def speedup_fwd(self) -> float:
        return self.eager_fwd_ms / self.compiled_fwd_ms if self.compiled_fwd_ms > 0 else 0.0

    @property
    def speedup_train(self) -> float:
        return self.eager_train_ms / self.compiled_train_ms if self.compiled_train_ms > 0 else 0.0


def _outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _outputs(v)]
    raise TypeError(f"blueprint output of type {type(value).__name__} is not a tensor or tuple")


def _loss(outputs: Sequence[torch.Tensor], seed: int) -> torch.Tensor:
    # A fixed random projection rather than a plain mean: a symmetric loss can cancel exactly the
    # gradient errors this check exists to catch.
    gen = torch.Generator().manual_seed(seed)
    # Drawn on the CPU (one generator, the same projection on every device), then moved.
    total = torch.zeros((), dtype=torch.float32, device=outputs[0].device if outputs else "cpu")
    for out in outputs:
        if not out.is_floating_point():
            continue
        weight = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out.device, out.dtype)
        total = total + (out * weight).float().sum() / max(1, out.numel())
    return total


def eager_runner(module: nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
    return module(*args)


def entry_runner(entry: CompiledEntry) -> Runner:
    def run(module: nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
        if not entry.matches(module, args):
            raise _GuardRejected(entry.why_not(module, args))
        return entry(module, *args)

    return run


class _GuardRejected(RuntimeError):
    pass


def _trajectory(
    module: nn.Module, run: Runner, args: tuple[torch.Tensor, ...], grad_enabled: bool,
    steps: int, lr: float, seed: int,
) -> dict[str, torch.Tensor]:
    record: dict[str, torch.Tensor] = {}
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    for step in range(steps):
        # Same RNG stream for both sides: with fallback_random, compiled dropout draws what eager does.
        torch.manual_seed(seed + step)
        with torch.set_grad_enabled(grad_enabled):
            outputs = _outputs(run(module, args))
        for i, out in enumerate(outputs):
            record[f"step{step}.output{i}"] = out.detach().clone()
        if not grad_enabled:
            continue
        loss = _loss(outputs, seed + 1000 + step)
        record[f"step{step}.loss"] = loss.detach().clone()
        for _, p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for name, p in params:
                if p.grad is None:
                    record[f"step{step}.grad.{name}"] = torch.zeros_like(p)
                    continue
                record[f"step{step}.grad.{name}"] = p.grad.detach().clone()
                p.add_(p.grad, alpha=-lr)
    for name, p in module.named_parameters():
        record[f"final.param.{name}"] = p.detach().clone()
    for name, b in module.named_buffers():
        record[f"final.buffer.{name}"] = b.detach().clone()
    return record


def check_parity(
    make_module: Callable[[], nn.Module],
    run: Runner,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    steps: int = 2,
    lr: float = 0.05,
    seed: int = 20240901,
) -> ParityReport:
    """Run `steps` SGD steps through `run` and through eager from the same weights; compare all."""
    eager = make_module()
    candidate = make_module()
    candidate.load_state_dict(eager.state_dict())
    reference = _trajectory(eager, eager_runner, args, grad_enabled, steps, lr, seed)
    try:
        observed = _trajectory(candidate, run, args, grad_enabled, steps, lr, seed)
    except _GuardRejected as exc:
        return ParityReport(False, float("inf"), float("inf"), float("inf"), [f"guards rejected the entry's own input: {exc}"])
    report = ParityReport(True)
    tf32 = {d: tf32_enabled(d) for d in {t.device.type for t in reference.values()}}
    for key, ref in reference.items():
        got = observed.get(key)
        if got is None or got.shape != ref.shape:
            report.passed = False
            report.failures.append(f"{key}: missing or shape {None if got is None else tuple(got.shape)}")
            continue
        if not ref.is_floating_point():
            if not torch.equal(got, ref):
                report.passed = False
                report.failures.append(f"{key}: integer values differ")
            continue
        rtol, atol = tolerance_for(ref.dtype, ref.device.type, tf32=tf32[ref.device.type])
        diff = (got.double() - ref.double()).abs()
        max_abs = float(diff.max()) if diff.numel() else 0.0
        if max_abs != max_abs:  # NaN
            max_abs = float("inf")
        scale = float(ref.double().abs().max()) if ref.numel() else 0.0
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        report.max_abs_error = max(report.max_abs_error, max_abs)
        report.max_rel_error = max(report.max_rel_error, rel)
        report.tolerance_used = max(report.tolerance_used, max_abs / (atol + rtol * scale))
        if max_abs > atol + rtol * scale:
            report.passed = False
            report.failures.append(f"{key}: max abs error {max_abs:.3g} (relative {rel:.3g})")
    return report


def _no_sync() -> None:
    pass


def device_sync(args: Sequence[Any]) -> Callable[[], None]:
    """What waits for queued device work before a clock is read: CUDA kernels run asynchronously,
    so a timer read without it measures only the launches."""
    if any(isinstance(a, torch.Tensor) and a.device.type == "cuda" for a in args):
        return torch.cuda.synchronize
    return _no_sync


def _compare_ms(
    eager: Callable[[], None], compiled: Callable[[], None], budget_s: float,
    sync: Callable[[], None] = _no_sync,
) -> tuple[float, float]:
    """Eager's median ms per call, and compiled's as that times the median per-round ratio, from
    rounds that alternate which goes first (`_paired`). Timing eager first in every round read a
    token-embedding entry at batch 1 as 0.44-2.3x eager over five runs while alternating rounds
    read 0.48-0.89x, and the consumer measured 0.65x: the second call of a pair gains from the
    first's warm caches."""
    timing = _paired((eager, compiled), budget_s, sync)
    eager_ms = statistics.median(timing.first_ms)
    return eager_ms, eager_ms * timing.ratio


def _paired(
    fns: tuple[Callable[[], None], Callable[[], None]], budget_s: float, sync: Callable[[], None],
    min_rounds: int = 9,
) -> PairedTiming:
    """Both callables timed back to back per round, the order alternating between rounds; at
    least `min_rounds` rounds, then more (up to 41) while `budget_s` lasts."""
    for _ in range(3):  # first calls allocate and finish lazy initialisation
        for fn in fns:
            fn()
    sync()
    start = time.perf_counter()
    fns[0]()
    fns[1]()
    sync()
    reps = max(1, min(50, int(0.02 / max(time.perf_counter() - start, 1e-6))))
    timing = PairedTiming([], [])
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() < deadline and rounds < 41):
        order = (0, 1) if rounds % 2 == 0 else (1, 0)
        took = [0.0, 0.0]
        for i in order:
            t0 = time.perf_counter()
            for _ in range(reps):
                fns[i]()
            sync()
            took[i] = (time.perf_counter() - t0) * 1000.0 / reps
        timing.first_ms.append(took[0])
        timing.second_ms.append(took[1])
        rounds += 1
    return timing


def _forward_call(module: nn.Module, runner: Runner, args: tuple[torch.Tensor, ...], grad_enabled: bool) -> Callable[[], None]:
    def go() -> None:
        with torch.set_grad_enabled(grad_enabled):
            runner(module, args)

    return go


def _train_call(module: nn.Module, runner: Runner, args: tuple[torch.Tensor, ...]) -> Callable[[], None]:
    def go() -> None:
        for p in module.parameters():
            p.grad = None
        _loss(_outputs(runner(module, args)), 7).backward()

    return go


def measure_speed(
    make_module: Callable[[], nn.Module],
    run: Runner,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    budget_s: float = 0.4,
) -> SpeedReport:
    """Median forward (and forward+backward for training entries) time, eager vs `run`."""
    eager_module = make_module()
    compiled_module = make_module()
    compiled_module.load_state_dict(eager_module.state_dict())
    sync = device_sync(args)
    eager_fwd, compiled_fwd = _compare_ms(
        _forward_call(eager_module, eager_runner, args, grad_enabled),
        _forward_call(compiled_module, run, args, grad_enabled),
        budget_s,
        sync,
    )
    report = SpeedReport(eager_fwd_ms=eager_fwd, compiled_fwd_ms=compiled_fwd)
    if grad_enabled:
        report.eager_train_ms, report.compiled_train_ms = _compare_ms(
            _train_call(eager_module, eager_runner, args), _train_call(compiled_module, run, args), budget_s, sync
        )
    return report


@dataclass
class PairedTiming:
    """Two runners timed in the same rounds: per-round ms of each, and `second / first` per round."""

    first_ms: list[float]
    second_ms: list[float]

    @property
    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.first_ms, self.second_ms, strict=True) if a > 0]

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios: a drift in background load cancels within a round."""
        return statistics.median(self.ratios)

    @property
    def ratio_q75(self) -> float:
        """Upper quartile of the per-round ratios (below 1: `second` won three rounds in four)."""
        return statistics.quantiles(self.ratios, n=4)[2] if len(self.ratios) > 1 else self.ratio


def compare_runners(
    make_module: Callable[[], nn.Module],
    first: Runner,
    second: Runner,
    args: tuple[torch.Tensor, ...],
    *,
    grad_enabled: bool,
    budget_s: float = 1.0,
    min_rounds: int = 9,
) -> PairedTiming:
    """`first` against `second` on `args`: forward+backward for training, else forward.

    Each round times both back to back, in alternating order (the second call of a pair can gain
    from the first's warm caches); on a shared machine, single medians of two runners doing the
    same work differed by up to 40%, the paired per-round ratio far less.
    """
    a, b = make_module(), make_module()
    b.load_state_dict(a.state_dict())
    if grad_enabled:
        fns = (_train_call(a, first, args), _train_call(b, second, args))
    else:
        fns = (_forward_call(a, first, args, False), _forward_call(b, second, args, False))
    return _paired(fns, budget_s, device_sync(args), min_rounds)
