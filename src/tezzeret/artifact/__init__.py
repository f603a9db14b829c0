"""Stage: artifact. The artifact file as the contract between its producer and its consumers.

Owns the file's framing and manifest access (`file`), the target description and the preflight
(`target`), who is trusted and signature verification (`trust`), the versions of Tezzeret's own code
an artifact records (`codeversion`), and the payload formats with the consumer side of torch's
private precompile API (`payload`). `compile` writes through it, the store and the forge read
manifests through it, and the loader reads everything through it. Importing any of it loads no
torch; only `payload.load_entry` does. Must never import a stage (compile, store, forge, loader).
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
from tezzeret.artifact.file import SUFFIX, Header, read_header, read_manifest, read_payloads, write_artifact

__all__ = [
    "SUFFIX",
    "ArtifactCorrupt",
    "ArtifactError",
    "BlueprintMismatch",
    "Header",
    "IncompatibleArtifact",
    "KeyringInvalid",
    "SignatureInvalid",
    "UnsignedArtifact",
    "read_header",
    "read_manifest",
    "read_payloads",
    "write_artifact",
]
