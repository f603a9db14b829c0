"""Urza, embedded: the store of blueprints and compiled artifacts, and artifact signing.

SQLite (WAL mode, `synchronous=FULL`) for metadata and lifecycle state, a content-addressed blob
directory for artifact files, and the service's Ed25519 signing key. This package is a library
the forge, API and loader use; it must never import forge or api, and never compile or load an
artifact. See `store.Store` for the threading rules (every method blocks).
"""

from tezzeret.store.blobs import BlobRef, BlobStore
from tezzeret.store.errors import (
    ArtifactConflict,
    ArtifactNotFound,
    BlobIntegrityError,
    BlueprintNotFound,
    InvalidInput,
    InvalidTransition,
    KeyFileInvalid,
    KeyPermissionError,
    SchemaTooNew,
    SigningError,
    StoreError,
)
from tezzeret.store.records import ArtifactRecord, AttemptOutcome, BlueprintRecord, RecompilationCandidate
from tezzeret.artifact.trust import key_id_for, verify_signature
from tezzeret.store.signing import SigningKey, load_public_key, sign_artifact_file
from tezzeret.store.store import Store

__all__ = [
    "ArtifactConflict",
    "ArtifactNotFound",
    "ArtifactRecord",
    "AttemptOutcome",
    "BlobIntegrityError",
    "BlobRef",
    "BlobStore",
    "BlueprintNotFound",
    "BlueprintRecord",
    "InvalidInput",
    "InvalidTransition",
    "KeyFileInvalid",
    "KeyPermissionError",
    "RecompilationCandidate",
    "SchemaTooNew",
    "SigningError",
    "SigningKey",
    "Store",
    "StoreError",
    "key_id_for",
    "load_public_key",
    "sign_artifact_file",
    "verify_signature",
]
