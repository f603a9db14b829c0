"""Versions of Tezzeret's own code, derived from its sources (as Inductor's `torch_key` is).

Owns `compile_code_version` (a digest of the `compile`, `blueprint` and `artifact` sources: every
module that shapes what an artifact holds or how it is verified) and `blueprint_code_version` (the
`blueprint` sources alone: what a consumer rebuilds the module with). Both go into manifests; the
first is part of every toolchain hash, so editing a builder or the compile code changes artifact
ids with nobody bumping a number by hand. Must never import the packages it digests: it reads
their files, so a torch-free process can compute them.

Over-approximation is deliberate: a docstring edit in those packages changes the versions too. A
spurious rebuild costs minutes once; an artifact wrongly taken for current can be silently wrong.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # the `tezzeret` package directory


@cache
def source_digest(*packages: str) -> str:
    """SHA-256 over the `.py` files of the named subpackages (paths and bytes, in sorted order)."""
    h = hashlib.sha256()
    for package in sorted(packages):
        for path in sorted((_ROOT / package).rglob("*.py")):
            rel = path.relative_to(_ROOT).as_posix()
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def compile_code_version() -> str:
    return source_digest("artifact", "blueprint", "compile")


def blueprint_code_version() -> str:
    return source_digest("blueprint")
