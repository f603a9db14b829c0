"""Typed errors of the artifact contract: every refusal of an artifact before anything in it runs.

Owns the exceptions raised while reading, checking and trusting an artifact file, each with a
stable `code` and a message naming the artifact, the key and what to do. Must never import torch
or any stage: the loader, the store and the forge all catch these.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class ArtifactError(TezzeretError):
    """Base of every refusal of an artifact."""

    code = "ARTIFACT_ERROR"


class ArtifactCorrupt(ArtifactError):
    """An artifact file whose framing, manifest or payload bytes are not what they claim to be."""

    code = "ARTIFACT_CORRUPT"

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(
            f"artifact {path}: {reason}; the file is damaged or was altered: fetch it again from the "
            "store or recompile the blueprint"
        )
        self.path = str(path)
        self.reason = reason


class SignatureInvalid(ArtifactError):
    """The signature block does not verify against any trusted key (altered, foreign or broken)."""

    code = "LOADER_SIGNATURE_INVALID"


class UnsignedArtifact(ArtifactError):
    """The artifact carries no signature, or no trusted key is configured to check one with."""

    code = "LOADER_UNSIGNED"


class IncompatibleArtifact(ArtifactError):
    """Built for another torch, Python, device, ISA, compile code or payload format."""

    code = "LOADER_INCOMPATIBLE"


class UnsupportedTorch(ArtifactError):
    """This process runs a torch whose precompile API Tezzeret does not claim to support."""

    code = "TORCH_UNSUPPORTED"


class TargetUnavailable(ArtifactError):
    """A build target was asked for that this host cannot build (no CUDA device, another GPU)."""

    code = "TARGET_UNAVAILABLE"


class BlueprintMismatch(ArtifactError):
    """The artifact is for another blueprint than the one asked for (or its IR and digest disagree)."""

    code = "LOADER_BLUEPRINT_MISMATCH"


class KeyringInvalid(ArtifactError):
    """A trusted-keys file or environment variable that cannot be read as keys."""

    code = "ARTIFACT_KEYRING_INVALID"
