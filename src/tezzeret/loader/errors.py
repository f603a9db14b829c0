"""Typed errors of the loader (Kasmina's side): refusals before anything is deserialised, and calls
that no compiled entry serves.

Owns the loader's exception classes, each with a stable `code` and a message saying what is wrong
and how to fix it. Must never import torch or the compiler.
"""

from __future__ import annotations

from tezzeret.compile.errors import ArtifactCorrupt
from tezzeret.errors import TezzeretError

__all__ = [
    "ArtifactCorrupt",
    "BatchOutOfRange",
    "BlueprintMismatch",
    "IncompatibleArtifact",
    "LoaderError",
    "NoMatchingEntry",
    "SignatureInvalid",
    "UnsignedArtifact",
]


class LoaderError(TezzeretError):
    code = "LOADER_ERROR"


class SignatureInvalid(LoaderError):
    """The signature block does not verify against the given public key."""

    code = "LOADER_SIGNATURE_INVALID"


class UnsignedArtifact(LoaderError):
    """A signature was required and the artifact carries none."""

    code = "LOADER_UNSIGNED"


class IncompatibleArtifact(LoaderError):
    """Built for another torch, Python, CPU target or payload format than this process has."""

    code = "LOADER_INCOMPATIBLE"


class BlueprintMismatch(LoaderError):
    """The artifact is for another blueprint than the one asked for (or its IR and digest disagree)."""

    code = "LOADER_BLUEPRINT_MISMATCH"


class NoMatchingEntry(LoaderError):
    """A call whose shapes, dtypes or grad mode no entry of the artifact was compiled for."""

    code = "LOADER_NO_MATCHING_ENTRY"


class BatchOutOfRange(NoMatchingEntry):
    """A call whose batch lies outside the blueprint's declared batch range: refused even with
    `fallback="eager"`, since nothing about the artifact was verified at that size."""

    code = "LOADER_BATCH_OUT_OF_RANGE"
