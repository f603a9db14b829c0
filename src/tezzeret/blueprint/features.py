"""What a blueprint costs, as numbers a predictor can compare: `BlueprintFeatures`.

Owns `features(ir)`: node count, op counts, parameters, forward FLOPs and activation bytes at the
example batch, input elements and the batch range, all from the static analysis. The forge records
them beside every compile attempt and predicts compile time and speed-up from them. Must never
import torch or run anything: these are facts about the IR, not measurements.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from tezzeret.blueprint.analysis import Analysis, ValidationLimits, analyze
from tezzeret.leyline import pb


@dataclass(frozen=True)
class BlueprintFeatures:
    nodes: int
    parameters: int
    flops: int  # forward FLOPs at the example batch
    activation_bytes: int  # at the example batch
    input_elements: int  # at the example batch
    batch_min: int
    batch_max: int
    example_batch: int
    ops: dict[str, int] = field(default_factory=dict)  # op name -> nodes using it

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BlueprintFeatures:
        data = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def features_from_analysis(analysis: Analysis) -> BlueprintFeatures:
    sym = analysis.symbol
    example = sym.example if sym else 0
    batch = example if sym else next(iter(analysis.slot_infos))
    infos = analysis.slot_infos[batch]
    elements = 0
    for i in range(len(analysis.inputs)):
        n = 1
        for d in infos[i].shape:
            n *= int(d)
        elements += n
    lo = sym.min if sym else (analysis.inputs[0].dims[0] or 0 if analysis.inputs else 0)
    hi = sym.max if sym else lo
    return BlueprintFeatures(
        nodes=len(analysis.steps),
        parameters=int(analysis.parameters),
        flops=int(analysis.flops[batch]),
        activation_bytes=int(analysis.activation_bytes[batch]),
        input_elements=elements,
        batch_min=int(lo),
        batch_max=int(hi),
        example_batch=int(example or lo),
        ops=dict(sorted(Counter(s.op for s in analysis.steps).items())),
    )


def features(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> BlueprintFeatures:
    """The features of a valid `ir`; raises `BlueprintRejected` for an invalid one."""
    return features_from_analysis(analyze(ir, limits))
