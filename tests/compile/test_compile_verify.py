"""Parity verification against eager: passes real equivalents, catches real differences."""

from __future__ import annotations

import torch
from torch import nn
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.blueprint import build_module, example_inputs
from tezzeret.compile import verify


def _mlp():  # type: ignore[no-untyped-def]
    ir = ir_of(TINY_MLP)
    return (lambda: build_module(ir)), example_inputs(ir)


def test_eager_against_itself_passes_with_zero_error() -> None:
    make, args = _mlp()
    for grad in (True, False):
        report = verify.check_parity(make, verify.eager_runner, args, grad_enabled=grad)
        assert report.passed, report.reason
        assert report.max_abs_error == 0.0


def test_a_forward_that_differs_slightly_is_caught() -> None:
    make, args = _mlp()

    def off_by_a_little(module: nn.Module, a: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return module(*a) * 1.01

    report = verify.check_parity(make, off_by_a_little, args, grad_enabled=True)
    assert not report.passed
    assert any("output0" in f for f in report.failures)
    assert report.max_rel_error > 1e-3


def test_wrong_gradients_with_a_matching_forward_are_caught() -> None:
    """The Conv→BN trap in miniature: forward identical, backward scaled."""
    make, args = _mlp()

    class ScaleGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            return g * 1.5

    def bad_backward(module: nn.Module, a: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ScaleGrad.apply(module(*a))

    report = verify.check_parity(make, bad_backward, args, grad_enabled=True)
    assert not report.passed
    assert any(".grad." in f for f in report.failures)
    assert not any(f.startswith("step0.output") for f in report.failures)
    # The same runner under no_grad has no backward to get wrong.
    assert verify.check_parity(make, bad_backward, args, grad_enabled=False).passed


def test_buffers_are_compared() -> None:
    class WithBuffer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen += 1
            return self.lin(x)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return WithBuffer()

    def skips_buffer(module: nn.Module, a: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return module.lin(*a)

    report = verify.check_parity(make, skips_buffer, (torch.randn(2, 4),), grad_enabled=True)
    assert not report.passed and any("buffer.seen" in f for f in report.failures)


def test_dropout_parity_uses_the_same_rng_stream() -> None:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))

    report = verify.check_parity(make, verify.eager_runner, (torch.randn(4, 8),), grad_enabled=True)
    assert report.passed, report.reason


def test_speed_report_measures_both_paths() -> None:
    make, args = _mlp()
    speed = verify.measure_speed(make, verify.eager_runner, args, grad_enabled=True, budget_s=0.05)
    assert speed.eager_fwd_ms > 0 and speed.compiled_fwd_ms > 0
    assert speed.eager_train_ms > 0 and speed.compiled_train_ms > 0
    assert speed.speedup_fwd > 0 and speed.speedup_train > 0
