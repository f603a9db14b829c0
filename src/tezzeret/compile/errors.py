"""Typed errors of the compile stage (tiers, precompile, verification, artifact files).

Owns: the exceptions a compile or an artifact read raises on purpose, each with a stable `code` and a
message that says what is wrong, where, and how to fix it. Must never import torch or any other
stage: the loader and the forge catch these without pulling in the compiler.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class CompileError(TezzeretError):
    """Base of every compile-stage error."""

    code = "COMPILE_ERROR"


class CompileFailed(CompileError):
    """Torch could not trace or lower the blueprint at all (every entry failed to compile)."""

    code = "COMPILE_FAILED"


class VerificationFailed(CompileError):
    """No entry passed the parity check against eager, so no artifact was written."""

    code = "COMPILE_VERIFICATION_FAILED"

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class BudgetExceeded(CompileError):
    """The tier's wall-clock budget ran out before a single entry was compiled and verified."""

    code = "COMPILE_BUDGET_EXCEEDED"
