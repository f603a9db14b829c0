"""Run a blueprint once for real: build it, forward and backward at every declared batch.

Owns `exercise`, which the `tezzeret blueprints --check` command and smoke tests use to show that
a validated blueprint also runs in eager torch. It must never compile anything and never change
the caller's RNG state (the module and inputs are seeded by the IR).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from tezzeret.blueprint.analysis import ValidationLimits, analyze
from tezzeret.blueprint.inputs import example_inputs_from_analysis
from tezzeret.blueprint.module import BlueprintModule
from tezzeret.leyline import pb


@dataclass(frozen=True)
class ExerciseResult:
    batches: tuple[int, ...]
    build_ms: float
    forward_backward_ms: tuple[float, ...]
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def exercise(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> ExerciseResult:
    """Build `ir` and run forward + backward at its smallest, example and largest batch."""
    analysis = analyze(ir, limits)
    batches = tuple(sorted(analysis.slot_infos))
    t0 = time.perf_counter()
    module = BlueprintModule(ir, limits)
    build_ms = (time.perf_counter() - t0) * 1000
    times: list[float] = []
    with torch.random.fork_rng(devices=[]):
        for batch in batches:
            t0 = time.perf_counter()
            try:
                module.zero_grad(set_to_none=True)
                out = module(*example_inputs_from_analysis(analysis, batch or None))
                outs = out if isinstance(out, tuple) else (out,)
                want = [analysis.slot_infos[batch][s].shape for s in analysis.output_slots]
                got = [tuple(o.shape) for o in outs]
                if got != want:
                    raise RuntimeError(f"output shapes {got} differ from the validator's {want}")
                loss = sum((o.float() ** 2).mean() for o in outs if o.requires_grad)
                if isinstance(loss, torch.Tensor):
                    loss.backward()
                    if not math.isfinite(float(loss.detach())):
                        raise RuntimeError("the loss is not finite")
            except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a diagnostic
                return ExerciseResult(batches, build_ms, tuple(times), False, f"batch {batch}: {type(exc).__name__}: {exc}")
            times.append(round((time.perf_counter() - t0) * 1000, 3))
    return ExerciseResult(batches, round(build_ms, 3), tuple(times), True)
