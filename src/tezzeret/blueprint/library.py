"""The built-in blueprint library: realistic JSON blueprints shipped inside the package.

Owns `library()` and `library_blueprint(name)`, which read `library/*.json` and validate every
file on the way in. It must never return a blueprint that failed validation and never cache
across calls (no module-level state); callers that need speed keep the list themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tezzeret.blueprint.analysis import ValidationLimits
from tezzeret.blueprint.ir import load_blueprint
from tezzeret.leyline import pb

LIBRARY_DIR = Path(__file__).resolve().parent / "library"


@dataclass(frozen=True)
class LibraryBlueprint:
    name: str
    category: str
    path: Path
    ir: pb.BlueprintIR


def library_paths() -> list[Path]:
    return sorted(LIBRARY_DIR.glob("*.json"))


def library(limits: ValidationLimits | None = None) -> list[LibraryBlueprint]:
    """Every library blueprint, validated, sorted by file name."""
    out = []
    for path in library_paths():
        ir = load_blueprint(path, limits)
        out.append(LibraryBlueprint(ir.metadata.name or path.stem, ir.metadata.category, path, ir))
    return out


def library_blueprint(name: str, limits: ValidationLimits | None = None) -> pb.BlueprintIR:
    """The library blueprint called `name` (its file stem); KeyError lists the known names."""
    path = LIBRARY_DIR / f"{name}.json"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(p.stem for p in library_paths())
        raise KeyError(f"no library blueprint {name!r}; known: {known}")
    return load_blueprint(path, limits)
