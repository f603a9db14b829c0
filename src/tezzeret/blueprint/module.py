"""IR -> `nn.Module`: the one importable class that runs any validated blueprint.

Owns `BlueprintModule`. Precompiled artifacts guard on the module's exact class and pickle a
reference to it by module path, so every blueprint is an instance of this same class (never a
class generated per instance, never an FX GraphModule). The layers live in an `nn.ModuleDict`
keyed by canonical position (`n0`, `n1`, ...), built in that order under a forked RNG seeded from
`metadata.init_seed`, so two IRs with the same digest get identical weights. `forward` walks a
plan of plain tuples: the loop unrolls under Dynamo and has no data-dependent control flow.

It must never build anything from an IR that has not passed `analyze`, and never touch the
caller's global RNG state.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import nn

from tezzeret.blueprint.analysis import Analysis, ValidationLimits, analyze
from tezzeret.blueprint.digest import digest_from_analysis
from tezzeret.blueprint.dtypes import NAMES, to_torch
from tezzeret.blueprint.ops import OPS
from tezzeret.leyline import pb

TORCH_DTYPES: Mapping[int, torch.dtype] = MappingProxyType({value: to_torch(value) for value in NAMES})

# (layer key, argument slots, result slots, returns a tuple, slots to release afterwards)
PlanStep = tuple[str, tuple[int, ...], tuple[int, ...], bool, tuple[int, ...]]


def _plan(analysis: Analysis) -> tuple[PlanStep, ...]:
    last_use: dict[int, int] = {}
    for pos, step in enumerate(analysis.steps):
        for s in step.in_slots:
            last_use[s] = pos
    keep = set(analysis.output_slots)
    plan: list[PlanStep] = []
    for pos, step in enumerate(analysis.steps):
        frees = tuple(sorted({s for s in step.in_slots if last_use[s] == pos and s not in keep}))
        plan.append((f"n{step.position}", step.in_slots, step.out_slots, OPS[step.op].multi_output, frees))
    return tuple(plan)


class BlueprintModule(nn.Module):
    """A validated BlueprintIR as a module: `forward(*inputs)` in the IR's input order.

    Returns one tensor when the IR has one output, else a tuple in output order. `blueprint_digest`
    is the IR's canonical digest.
    """

    def __init__(self, ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> None:
        super().__init__()
        analysis = analyze(ir, limits)
        self.blueprint_digest: str = digest_from_analysis(analysis)
        self.blueprint_name: str = ir.metadata.name
        infos = analysis.slot_infos[analysis.example_batch]
        self.layers = nn.ModuleDict()
        # fork_rng restores the caller's CPU RNG afterwards; seeding only the CPU generator keeps
        # accelerator RNG state untouched (parameters are created on the CPU).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(int(analysis.metadata.init_seed))
            for step in analysis.steps:
                ins = [infos[s] for s in step.in_slots]
                self.layers[f"n{step.position}"] = OPS[step.op].build(step.attrs, ins)
        self.to(TORCH_DTYPES[analysis.compute_dtype])
        self._plan: tuple[PlanStep, ...] = _plan(analysis)
        self._n_inputs: int = len(analysis.inputs)
        self._n_slots: int = analysis.n_slots
        self._outputs: tuple[int, ...] = analysis.output_slots

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) != self._n_inputs:
            raise TypeError(f"this blueprint takes {self._n_inputs} input tensor(s), got {len(inputs)}")
        values: list[torch.Tensor | None] = list(inputs) + [None] * (self._n_slots - self._n_inputs)
        for key, args, results, multi, frees in self._plan:
            out = self.layers[key](*[values[s] for s in args])
            if multi:
                for k, s in enumerate(results):
                    values[s] = out[k]
            else:
                values[results[0]] = out
            for s in frees:
                values[s] = None
        # Output slots are never released (`_plan` keeps them out of `frees`), so they hold
        # tensors here; the ignores spare the traced loop a per-output None check.
        if len(self._outputs) == 1:
            return values[self._outputs[0]]  # type: ignore[return-value]  # an output slot, never None
        return tuple(values[s] for s in self._outputs)  # type: ignore[misc]  # output slots, never None

    def extra_repr(self) -> str:
        return f"blueprint={self.blueprint_name!r}, digest={self.blueprint_digest[:16]}"


def build_module(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> BlueprintModule:
    """Validate `ir` and build its module (deterministic weights from `metadata.init_seed`)."""
    return BlueprintModule(ir, limits)
