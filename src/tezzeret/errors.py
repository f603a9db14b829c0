"""The root of Tezzeret's typed exceptions.

Each stage defines its own errors (`BlueprintRejected`, `CompileTimeout`, `WalCorruption`, …) as
subclasses of `TezzeretError`, carrying what a user needs to fix the input. This module owns only
the base class; it must never import a stage.
"""

from __future__ import annotations


class TezzeretError(Exception):
    """Base of every error Tezzeret raises on purpose. `code` is stable and machine-readable."""

    code: str = "TEZZERET_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": str(self)}


class ConfigError(TezzeretError):
    """A configuration key is unknown or has a bad value; `path` names it (e.g. `wal.path`)."""

    code = "CONFIG_INVALID"

    def __init__(self, problems: list[tuple[str, str]], source: str = "configuration") -> None:
        self.problems = problems
        lines = "; ".join(f"{path}: {reason}" for path, reason in problems)
        super().__init__(f"invalid {source}: {lines}")
