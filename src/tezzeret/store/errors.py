"""Typed errors of the store (Urza embedded) and of artifact signing.

Owns: the exceptions `tezzeret.store` raises on purpose, each with a stable `code` and a message
that says what is wrong, where, and how to fix it. Must never import anything but `tezzeret.errors`.
"""

from __future__ import annotations

from pathlib import Path

from tezzeret.errors import TezzeretError


class StoreError(TezzeretError):
    """Base of every store error."""

    code = "STORE_ERROR"


class BlueprintNotFound(StoreError):
    code = "STORE_BLUEPRINT_NOT_FOUND"

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(
            f"blueprint {digest!r} is not in the store; put it with put_blueprint() first "
            "(or check the digest: it is the SHA-256 hex of the canonical IR)"
        )


class ArtifactNotFound(StoreError):
    code = "STORE_ARTIFACT_NOT_FOUND"

    def __init__(self, artifact_id: str) -> None:
        self.artifact_id = artifact_id
        super().__init__(
            f"artifact {artifact_id!r} is not in the store; list what exists with list_artifacts()"
        )


class InvalidTransition(StoreError):
    """A lifecycle move the state machine forbids, or one whose expected source state is stale."""

    code = "STORE_INVALID_TRANSITION"

    def __init__(self, kind: str, key: str, from_state: str, to_state: str, detail: str = "") -> None:
        self.kind = kind
        self.key = key
        self.from_state = from_state
        self.to_state = to_state
        why = detail or f"{from_state} → {to_state} is not an allowed {kind} transition"
        super().__init__(
            f"{kind} {key!r}: cannot move from {from_state} to {to_state}: {why}; "
            f"see tezzeret.store.lifecycle for the allowed moves"
        )


class ArtifactConflict(StoreError):
    """A second put of an artifact id with different content: artifacts are immutable by id."""

    code = "STORE_ARTIFACT_CONFLICT"

    def __init__(self, artifact_id: str, what: str) -> None:
        self.artifact_id = artifact_id
        super().__init__(
            f"artifact {artifact_id!r} already exists with a different {what}; artifacts are "
            "immutable by id: a changed toolchain, tier or target must produce a new id"
        )


class BlueprintConflict(StoreError):
    """The same digest was put with different IR bytes: the caller's digest is wrong."""

    code = "STORE_BLUEPRINT_CONFLICT"

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(
            f"blueprint {digest!r} is already stored with different IR bytes; the digest must be "
            "computed from the canonical IR (tezzeret.blueprint), never chosen by the caller"
        )


class InvalidInput(StoreError):
    """An argument the store cannot accept (bad digest, empty id, undecodable IR, oversize file)."""

    code = "STORE_INVALID_INPUT"


class BlobIntegrityError(StoreError):
    """A blob's bytes no longer hash to its address: the file was altered or truncated on disk."""

    code = "STORE_BLOB_CORRUPT"

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = path
        super().__init__(
            f"blob {path} should hash to {expected} but hashes to {actual}; the file was changed "
            "on disk: put the original artifact again to restore it, or quarantine the artifact"
        )


class SchemaTooNew(StoreError):
    code = "STORE_SCHEMA_TOO_NEW"

    def __init__(self, path: Path, found: int, supported: int) -> None:
        super().__init__(
            f"{path} has schema version {found}, newer than this Tezzeret supports ({supported}); "
            "upgrade Tezzeret or point `state_dir` at another directory"
        )


class SigningError(StoreError):
    """Base of signing-key errors."""

    code = "SIGNING_ERROR"


class KeyPermissionError(SigningError):
    """A key file or directory others can read or write: the private key may be compromised."""

    code = "SIGNING_KEY_PERMISSIONS"

    def __init__(self, path: Path, mode: int, wanted: int) -> None:
        self.path = path
        super().__init__(
            f"{path} has mode {mode:04o}, looser than {wanted:04o}; others could read or replace "
            f"the signing key. Fix with `chmod {wanted:o} {path}` (and rotate the key if it may "
            "have leaked)"
        )


class KeyFileInvalid(SigningError):
    code = "SIGNING_KEY_INVALID"

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not a usable Ed25519 key ({reason}); restore it from backup, or move it "
            "away to create a new key pair (artifacts signed by the old key then fail verification)"
        )
