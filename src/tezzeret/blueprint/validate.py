"""The SecurityValidator's public face: `validate(ir) -> BlueprintSummary`.

Owns `BlueprintSummary` (what a valid blueprint costs and returns) and `validate`, which runs
`analysis.analyze` and summarises it. It must never let anything but `BlueprintRejected` escape
and never import torch.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

from tezzeret.blueprint.analysis import Analysis, ValidationLimits, analyze
from tezzeret.blueprint.digest import digest_from_analysis
from tezzeret.leyline import pb


@dataclass(frozen=True)
class OutputSpec:
    name: str
    dtype: str
    # A fixed size, or the symbolic dim's name ("batch", or "64*batch" after a flatten).
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class BlueprintSummary:
    name: str
    category: str
    digest: str
    node_count: int
    parameters: int
    # Forward FLOPs and activation bytes at the example batch, and at the largest batch.
    flops: int
    flops_at_max_batch: int
    activation_bytes: int
    activation_bytes_at_max_batch: int
    batch_range: tuple[int, int]
    example_batch: int
    outputs: tuple[OutputSpec, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _symbolic(analysis: Analysis, slot: int) -> tuple[int | str, ...]:
    sym = analysis.symbol
    at = {b: infos[slot].shape for b, infos in analysis.slot_infos.items()}
    base = at[next(iter(at))]
    if sym is None:
        return base
    out: list[int | str] = []
    for j, size in enumerate(base):
        sizes = {b: shape[j] for b, shape in at.items()}
        if len(set(sizes.values())) == 1:
            out.append(size)
        elif all(v % b == 0 and v // b == size // sym.example for b, v in sizes.items()):
            factor = size // sym.example
            out.append(sym.name if factor == 1 else f"{factor}*{sym.name}")
        else:
            out.append(f"f({sym.name})")
    return tuple(out)


def summarize(analysis: Analysis) -> BlueprintSummary:
    ex = analysis.example_batch
    worst = max(analysis.slot_infos)
    infos = analysis.slot_infos[ex]
    if analysis.symbol is not None:
        brange = (analysis.symbol.min, analysis.symbol.max)
        example = analysis.symbol.example
    else:
        first = analysis.inputs[0].dims[0] or 0
        brange, example = (first, first), first
    return BlueprintSummary(
        name=analysis.metadata.name,
        category=analysis.metadata.category,
        digest=digest_from_analysis(analysis),
        node_count=len(analysis.steps),
        parameters=analysis.parameters,
        flops=analysis.flops[ex],
        flops_at_max_batch=analysis.flops[worst],
        activation_bytes=analysis.activation_bytes[ex],
        activation_bytes_at_max_batch=analysis.activation_bytes[worst],
        batch_range=brange,
        example_batch=example,
        outputs=tuple(
            OutputSpec(name=name, dtype=pb.DType.Name(infos[slot].dtype), shape=_symbolic(analysis, slot))
            for name, slot in zip(analysis.output_names, analysis.output_slots, strict=True)
        ),
    )


# Accepted blueprints by (SHA-256 of their deterministic wire form, limits): the same blueprint
# submitted again (a resubmission answered from cache, a poller's or a joiner's copy) costs a
# hash instead of a full analysis. The result is a pure function of the bytes and the limits, and
# summaries are frozen, so sharing one is safe. Refusals are not kept (they raise).
_ACCEPTED: OrderedDict[tuple[bytes, object], BlueprintSummary] = OrderedDict()
_ACCEPTED_MAX = 1024
_ACCEPTED_LOCK = threading.Lock()


def validate(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> BlueprintSummary:
    """Check `ir` statically; raises `BlueprintRejected` (and nothing else) when it is refused.

    `limits` defaults to the embedded defaults of the `blueprint` config section; the forge passes
    `settings.blueprint`.
    """
    key: tuple[bytes, object] | None
    try:
        key = (hashlib.sha256(ir.SerializeToString(deterministic=True)).digest(), limits)
        hash(key)
    except Exception:  # noqa: BLE001 - unserialisable message or unhashable limits: just analyse it
        key = None
    if key is not None:
        with _ACCEPTED_LOCK:
            hit = _ACCEPTED.get(key)
            if hit is not None:
                _ACCEPTED.move_to_end(key)
                return hit
    summary = summarize(analyze(ir, limits))
    if key is not None:
        with _ACCEPTED_LOCK:
            _ACCEPTED[key] = summary
            while len(_ACCEPTED) > _ACCEPTED_MAX:
                _ACCEPTED.popitem(last=False)
    return summary
