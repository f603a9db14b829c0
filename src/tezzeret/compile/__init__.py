"""Stage: compile. The four tiers, compiling one blueprint in-process, parity verification, and the
payloads of the artifact file (written through `tezzeret.artifact`).

Importing this package loads no torch: `compile_blueprint` and friends import it on first use, so
the forge can compute artifact ids and read manifests cheaply. It must never import a later stage
(sandbox, forge, api, loader).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tezzeret.compile.errors import BudgetExceeded, CompileError, CompileFailed, VerificationFailed
from tezzeret.compile.tiers import TIERS, Tier, tier_for

if TYPE_CHECKING:
    from tezzeret.compile.compile import CompileOutcome, compile_blueprint, plan_entries
    from tezzeret.compile.identity import artifact_id_for
    from tezzeret.compile.task import run_compile_task

_LAZY = {
    "CompileOutcome": "tezzeret.compile.compile",
    "artifact_id_for": "tezzeret.compile.identity",
    "compile_blueprint": "tezzeret.compile.compile",
    "plan_entries": "tezzeret.compile.compile",
    "run_compile_task": "tezzeret.compile.task",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tezzeret.compile' has no attribute {name!r}")


__all__ = [
    "TIERS",
    "BudgetExceeded",
    "CompileError",
    "CompileFailed",
    "CompileOutcome",
    "Tier",
    "VerificationFailed",
    "artifact_id_for",
    "compile_blueprint",
    "plan_entries",
    "run_compile_task",
    "tier_for",
]
