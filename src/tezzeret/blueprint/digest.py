"""The canonical form of a BlueprintIR and its digest (ARCHITECTURE.md decision 2).

Owns `canonical_ir` and `digest`. The canonical form keeps only what changes the computation or
the initial weights: input dtypes and dims (symbols renamed `s0`), nodes renamed `n<position>` in
the structure-only order of `analysis._canonical_order`, attributes normalised (defaults filled)
and sorted by key, outputs, and `metadata.init_seed`. Names, declaration order and descriptive
metadata (name, description, category, value, tamiyo_interest, risk, tier) never change it. It
must never hash anything that is not in the canonical form.
"""

from __future__ import annotations

import hashlib

from tezzeret.blueprint.analysis import Analysis, ValidationLimits, analyze
from tezzeret.blueprint.attrs import attr_to_pb
from tezzeret.blueprint.ops import OPS
from tezzeret.leyline import SCHEMA_VERSION, encode, pb

# Bumped when the canonical form changes, so old and new digests never collide by accident.
CANONICAL_FORM = b"tezzeret.blueprint.canonical/1\n"


def _slot_name(analysis: Analysis, slot: int, producer: dict[int, tuple[int, int, int]]) -> str:
    if slot < len(analysis.inputs):
        return f"i{slot}"
    pos, out, n_out = producer[slot]
    return f"n{pos}" if n_out == 1 else f"n{pos}:{out}"


def canonical_from_analysis(analysis: Analysis) -> pb.BlueprintIR:
    producer = {
        s: (step.position, k, len(step.out_slots)) for step in analysis.steps for k, s in enumerate(step.out_slots)
    }
    ir = pb.BlueprintIR(schema_version=SCHEMA_VERSION)
    sym = analysis.symbol
    for i, decl in enumerate(analysis.inputs):
        spec = ir.inputs.add(name=f"i{i}", dtype=decl.dtype)
        for d in decl.dims:
            if d is None:
                assert sym is not None
                spec.dims.add(symbol="s0", min=sym.min, max=sym.max, size=sym.example)
            else:
                spec.dims.add(size=d)
    for step in analysis.steps:
        node = ir.nodes.add(name=f"n{step.position}", op=step.op)
        node.inputs.extend(_slot_name(analysis, s, producer) for s in step.in_slots)
        schema = OPS[step.op].attrs
        for key in sorted(step.attrs):
            if schema[key].redundant:
                continue
            attr = attr_to_pb(key, schema[key], step.attrs[key])
            if attr is not None:
                node.attrs.append(attr)
    ir.outputs.extend(_slot_name(analysis, s, producer) for s in analysis.output_slots)
    ir.metadata.init_seed = analysis.metadata.init_seed
    return ir


def canonical_ir(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> pb.BlueprintIR:
    """The canonical form of `ir` (validates it first; raises `BlueprintRejected`)."""
    return canonical_from_analysis(analyze(ir, limits))


def digest_from_analysis(analysis: Analysis) -> str:
    return hashlib.sha256(CANONICAL_FORM + encode(canonical_from_analysis(analysis))).hexdigest()


def digest(ir: pb.BlueprintIR, limits: ValidationLimits | None = None) -> str:
    """SHA-256 (64 hex chars) of the canonical form; raises `BlueprintRejected` on an invalid IR."""
    return digest_from_analysis(analyze(ir, limits))
