"""Typed errors of the loader (Kasmina's side): refusals before anything is deserialised (from the
artifact contract), and calls that no compiled entry serves.

Owns `LoaderError` and `NoMatchingEntry`, each with a stable `code` and a message saying what is
wrong and how to fix it; re-exports the artifact refusals a loader raises. Must never import torch
or the compiler.
"""

from __future__ import annotations

from tezzeret.artifact.errors import (
    ArtifactCorrupt,
    ArtifactError,
    BlueprintMismatch,
    IncompatibleArtifact,
    KeyringInvalid,
    SignatureInvalid,
    UnsignedArtifact,
)
from tezzeret.errors import TezzeretError

__all__ = [
    "ArtifactCorrupt",
    "ArtifactError",
    "BatchOutOfRange",
    "BlueprintMismatch",
    "IncompatibleArtifact",
    "KeyringInvalid",
    "LoaderError",
    "NoMatchingEntry",
    "SignatureInvalid",
    "UnsignedArtifact",
]


class LoaderError(TezzeretError):
    code = "LOADER_ERROR"


class NoMatchingEntry(LoaderError):
    """A call whose shapes, dtypes or grad mode no entry of the artifact was compiled for."""

    code = "LOADER_NO_MATCHING_ENTRY"


class BatchOutOfRange(NoMatchingEntry):
    """A call whose batch lies outside the blueprint's declared batch range: refused even with
    `fallback="eager"`, since nothing about the artifact was verified at that size."""

    code = "LOADER_BATCH_OUT_OF_RANGE"
