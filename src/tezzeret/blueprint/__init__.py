"""Stage: blueprint. BlueprintIR in memory: load, validate (the SecurityValidator), digest, build.

Karn designs blueprints and Urza stores them; this package is where Tezzeret reads one, refuses
anything hostile with `BlueprintRejected`, gives it a canonical digest, and turns it into the one
importable `BlueprintModule` class. It must never import a later stage (compile, sandbox, forge).
Validation-only imports (`validate`, `digest`, `load_blueprint`) do not load torch; the builders
(`build_module`, `example_inputs`, `BlueprintModule`) load it on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tezzeret.blueprint.analysis import ValidationLimits
from tezzeret.blueprint.digest import canonical_ir, digest
from tezzeret.blueprint.errors import CODES, BlueprintRejected
from tezzeret.blueprint.ir import load_blueprint, parse_blueprint
from tezzeret.blueprint.library import LibraryBlueprint, library, library_blueprint
from tezzeret.blueprint.ops import OPS
from tezzeret.blueprint.validate import BlueprintSummary, OutputSpec, validate

if TYPE_CHECKING:
    from tezzeret.blueprint.inputs import batch_dims, batch_range, example_inputs, example_training_step, input_shapes
    from tezzeret.blueprint.module import BlueprintModule, build_module

_LAZY: Mapping[str, str] = MappingProxyType({
    "BlueprintModule": "tezzeret.blueprint.module",
    "build_module": "tezzeret.blueprint.module",
    "batch_dims": "tezzeret.blueprint.inputs",
    "batch_range": "tezzeret.blueprint.inputs",
    "example_inputs": "tezzeret.blueprint.inputs",
    "example_training_step": "tezzeret.blueprint.inputs",
    "input_shapes": "tezzeret.blueprint.inputs",
})


def __getattr__(name: str) -> Any:
    # Torch-backed names are imported on first use so validation-only callers never load torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tezzeret.blueprint' has no attribute {name!r}")


__all__ = [
    "CODES",
    "OPS",
    "BlueprintModule",
    "BlueprintRejected",
    "BlueprintSummary",
    "LibraryBlueprint",
    "OutputSpec",
    "ValidationLimits",
    "batch_dims",
    "batch_range",
    "build_module",
    "canonical_ir",
    "digest",
    "example_inputs",
    "example_training_step",
    "input_shapes",
    "library",
    "library_blueprint",
    "load_blueprint",
    "parse_blueprint",
    "validate",
]
