"""Declared shapes and deterministic example inputs of a blueprint.

Owns `batch_range`, `batch_dims`, `input_shapes` and `example_inputs`: what the compiler pre-warms and the
parity checks feed; and `example_training_step`, the one SGD step examples and benchmarks train a
blueprint with. Example tensors come from a private generator seeded by the IR's
`init_seed` and the batch size, so they are identical in every process. It must never touch the
caller's global RNG.
"""

from __future__ import annotations

import torch

from tezzeret.blueprint.analysis import Analysis, ValidationLimits, analyze
from tezzeret.blueprint.module import TORCH_DTYPES
from tezzeret.blueprint.ops import INDEX_DTYPES
from tezzeret.leyline import pb

# Mixed into the seed so example inputs never reuse the weights' random stream.
_INPUT_STREAM = 0x5EED_1A7E


def _range(analysis: Analysis) -> tuple[int, int]:
    if analysis.symbol is not None:
        return analysis.symbol.min, analysis.symbol.max
    first = analysis.inputs[0].dims[0]
    assert first is not None
    return first, first


def batch_range(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> tuple[int, int]:
    """The symbolic batch dim's inclusive (min, max); (n, n) for a static blueprint, n its leading dim."""
    return _range(analyze(ir, limits))


def batch_dims(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> tuple[tuple[int, int], ...]:
    """(input index, dim index) of every symbolic (batch) dim; empty for a static blueprint."""
    return tuple(
        (i, d) for i, decl in enumerate(analyze(ir, limits).inputs) for d, size in enumerate(decl.dims) if size is None
    )


def _batch(analysis: Analysis, batch: int | None) -> int | None:
    if analysis.symbol is None:
        lo, _ = _range(analysis)
        if batch is not None and batch != lo:
            raise ValueError(f"batch {batch}: this blueprint is static with leading dimension {lo}")
        return None
    if batch is None:
        return analysis.symbol.example
    lo, hi = analysis.symbol.min, analysis.symbol.max
    if not lo <= batch <= hi:
        raise ValueError(f"batch {batch} is outside the blueprint's declared range [{lo}, {hi}]")
    return batch


def input_shapes(ir: pb.BlueprintIR, batch: int | None = None, limits: ValidationLimits | None = None) -> list[tuple[int, ...]]:
    """Concrete input shapes at `batch` (default: the declared example size)."""
    analysis = analyze(ir, limits)
    b = _batch(analysis, batch)
    return [decl.shape(b) for decl in analysis.inputs]


def example_inputs_from_analysis(analysis: Analysis, batch: int | None = None) -> tuple[torch.Tensor, ...]:
    b = _batch(analysis, batch)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(((int(analysis.metadata.init_seed) ^ _INPUT_STREAM) + 7919 * (b or 0)) % (1 << 63))
    out: list[torch.Tensor] = []
    for decl, bound in zip(analysis.inputs, analysis.index_bounds, strict=True):
        shape = decl.shape(b)
        if decl.dtype in INDEX_DTYPES:
            t = torch.randint(0, bound or 2, shape, generator=gen, dtype=torch.int64)
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float32)
        out.append(t.to(TORCH_DTYPES[decl.dtype]))
    return tuple(out)


def example_inputs(ir: pb.BlueprintIR, batch: int | None = None, limits: ValidationLimits | None = None) -> tuple[torch.Tensor, ...]:
    """Deterministic inputs at the declared shapes (`batch` replaces the symbolic dim)."""
    return example_inputs_from_analysis(analyze(ir, limits), batch)


def example_training_step(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """One step against the mean square of the first output; returns the loss. For examples and
    benchmarks only: parity checks use a random projection instead (a symmetric loss can cancel
    the gradient errors they look for)."""
    optimizer.zero_grad()
    out = module(*inputs)
    loss = (out if isinstance(out, torch.Tensor) else out[0]).float().square().mean()
    loss.backward()
    optimizer.step()
    return loss
