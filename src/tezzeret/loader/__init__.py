"""Stage: loader (Kasmina's side). Fetch, verify and load an artifact; never compile.

`load(path)` returns a trainable `KernelModule`; `KernelProvider` serves training loops without
ever blocking them. Both refuse an artifact not signed by a trusted key unless told
`trust_unsigned=True` (see `tezzeret.artifact.trust` for where keys come from). This package must never import the forge or the API.
"""

from __future__ import annotations

from tezzeret.loader.errors import (
    ArtifactCorrupt,
    ArtifactError,
    BatchOutOfRange,
    BlueprintMismatch,
    IncompatibleArtifact,
    KeyringInvalid,
    LoaderError,
    NoMatchingEntry,
    SignatureInvalid,
    UnsignedArtifact,
)
from tezzeret.loader.load import (
    KernelModule,
    VerifiedArtifact,
    check_compatible,
    load,
    open_artifact,
    prewarm,
)
from tezzeret.loader.provider import KernelProvider, ProviderState

__all__ = [
    "ArtifactCorrupt",
    "ArtifactError",
    "KeyringInvalid",
    "BatchOutOfRange",
    "BlueprintMismatch",
    "IncompatibleArtifact",
    "KernelModule",
    "KernelProvider",
    "LoaderError",
    "NoMatchingEntry",
    "ProviderState",
    "SignatureInvalid",
    "UnsignedArtifact",
    "VerifiedArtifact",
    "check_compatible",
    "load",
    "open_artifact",
    "prewarm",
]
