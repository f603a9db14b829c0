"""Artifacts in Urza: immutable by id, their file as a content-addressed blob, their kernel status.

Owns: the `artifacts` and `artifact_status_history` tables and the link from an artifact id to its
blob. An artifact row is written once; only its status (and the reason) moves afterwards, along
`lifecycle.KERNEL_TRANSITIONS`. Must never delete anything (Urza hard-deletes nothing), never
parse the artifact file (that format belongs to `tezzeret.artifact`) and never load it.
Every method blocks on SQLite or disk; from async code call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from tezzeret.leyline import codec, pb
from tezzeret.store.blobs import BlobRef, BlobStore
from tezzeret.store.db import Database
from tezzeret.store.errors import (
    ArtifactConflict,
    ArtifactNotFound,
    BlueprintNotFound,
    InvalidInput,
    InvalidTransition,
)
from tezzeret.store.lifecycle import INITIAL_KERNEL_STATE, kernel_move_allowed, kernel_status_name
from tezzeret.store.records import ArtifactRecord, strategy_name
from tezzeret.artifact.trust import verify_signature


class ArtifactTable:
    """The artifact half of the store. Mixed into `Store`, which provides `_db`, `_blobs`,
    `_clock` and `_max_blob_bytes`."""

    _db: Database
    _blobs: BlobStore
    _clock: Callable[[], int]
    _max_blob_bytes: int

    def _artifact(self, conn: sqlite3.Connection, artifact_id: str) -> ArtifactRecord | None:
        row = conn.execute("SELECT * FROM artifacts WHERE artifact_id = ?", (artifact_id,)).fetchone()
        return None if row is None else ArtifactRecord.from_row(row)

    def put_artifact(
        self,
        manifest: pb.CompiledKernelArtifact,
        artifact_file: Path | Iterable[bytes],
        signature: pb.ArtifactSignature,
        *,
        public_key: bytes | None = None,
    ) -> ArtifactRecord:
        """Store an artifact: its file goes into the blobs by SHA-256, its manifest and signature
        into a row with status PENDING_BENCHMARKING.

        `artifact_file` is the signed file's path, or its bytes as chunks (the forge streams the
        signed framing and the payload area straight into the blob: one write into the store).

        Immutable by id: a second put of the same id returns the existing record when manifest,
        signature and file are identical, and raises `ArtifactConflict` otherwise. The blueprint
        must already be stored. With `public_key`, the signature is checked over the manifest's
        deterministic bytes first and a bad one is refused.
        """
        artifact_id = manifest.artifact_id
        if not artifact_id:
            raise InvalidInput("the manifest has no artifact_id; the compile stage must set it")
        if not manifest.blueprint_digest:
            raise InvalidInput(f"artifact {artifact_id!r}: the manifest has no blueprint_digest")
        if not signature.signature or not signature.key_id:
            raise InvalidInput(f"artifact {artifact_id!r}: unsigned (the signature block is empty)")
        manifest_bytes = codec.encode(manifest)
        if public_key is not None and not verify_signature(public_key, manifest_bytes, signature):
            raise InvalidInput(
                f"artifact {artifact_id!r}: the signature does not verify with the given public key; "
                "re-sign the manifest with the service's key"
            )
        strategy = strategy_name(manifest.strategy) if manifest.strategy else None
        if strategy is None:
            raise InvalidInput(f"artifact {artifact_id!r}: the manifest names no strategy")
        signature_bytes = codec.encode(signature)

        if isinstance(artifact_file, (str, Path)):
            with self._db.read() as conn:
                existing = self._artifact(conn, artifact_id)
            if existing is not None and not existing.corrupt:
                # Skip copying the file when the answer is already known from the row.
                return self._same_or_conflict(existing, manifest_bytes, signature_bytes, Path(artifact_file))
            # Blob first, row second: a crash in between leaves an unreferenced blob, never a row
            # pointing at nothing.
            blob = self._blobs.put_file(Path(artifact_file), max_bytes=self._max_blob_bytes)
        else:
            # Streamed bytes can be read once: the blob (content-addressed, so idempotent) first.
            blob = self._blobs.put_stream(artifact_file, max_bytes=self._max_blob_bytes, what=f"artifact {artifact_id}")
        now = self._clock()
        with self._db.write() as conn:
            existing = self._artifact(conn, artifact_id)
            if existing is not None and existing.corrupt:
                return self._replace_corrupt(conn, existing, manifest, manifest_bytes, signature, signature_bytes, blob, now)
            if existing is not None:
                return self._same_or_conflict(existing, manifest_bytes, signature_bytes, blob)
            if conn.execute("SELECT 1 FROM blueprints WHERE digest = ?", (manifest.blueprint_digest,)).fetchone() is None:
                raise BlueprintNotFound(manifest.blueprint_digest)
            conn.execute(
                "INSERT INTO artifacts (artifact_id, blueprint_digest, strategy, target, "
                "toolchain_hash, manifest, manifest_sha256, signature, key_id, file_sha256, "
                "file_size, status, status_reason, created_at_ns, updated_at_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    artifact_id, manifest.blueprint_digest, strategy, manifest.target,
                    manifest.toolchain_hash, manifest_bytes, hashlib.sha256(manifest_bytes).hexdigest(),
                    signature_bytes, signature.key_id, blob.sha256, blob.size, INITIAL_KERNEL_STATE,
                    "stored", now, now,
                ),
            )
            conn.execute(
                "INSERT INTO artifact_status_history (artifact_id, from_status, to_status, reason, at_ns) "
                "VALUES (?, NULL, ?, 'stored', ?)",
                (artifact_id, INITIAL_KERNEL_STATE, now),
            )
            record = self._artifact(conn, artifact_id)
            assert record is not None  # just inserted in this transaction
            return record

    def _replace_corrupt(
        self,
        conn: sqlite3.Connection,
        existing: ArtifactRecord,
        manifest: pb.CompiledKernelArtifact,
        manifest_bytes: bytes,
        signature: pb.ArtifactSignature,
        signature_bytes: bytes,
        blob: BlobRef,
        now: int,
    ) -> ArtifactRecord:
        """The rebuild of an artifact whose blob was found corrupt: the one case an artifact row is
        rewritten. Same id (same blueprint, tier and toolchain), new bytes, status starts over."""
        if manifest.blueprint_digest != existing.blueprint_digest:
            raise ArtifactConflict(existing.artifact_id, "blueprint of the rebuild")
        conn.execute(
            "UPDATE artifacts SET manifest = ?, manifest_sha256 = ?, signature = ?, key_id = ?, file_sha256 = ?, "
            "file_size = ?, status = ?, status_reason = 'rebuilt after corruption', corrupt_at_ns = NULL, "
            "updated_at_ns = ? WHERE artifact_id = ?",
            (manifest_bytes, hashlib.sha256(manifest_bytes).hexdigest(), signature_bytes, signature.key_id,
             blob.sha256, blob.size, INITIAL_KERNEL_STATE, now, existing.artifact_id),
        )
        conn.execute(
            "INSERT INTO artifact_status_history (artifact_id, from_status, to_status, reason, at_ns) "
            "VALUES (?, ?, ?, 'rebuilt after corruption', ?)",
            (existing.artifact_id, existing.status, INITIAL_KERNEL_STATE, now),
        )
        record = self._artifact(conn, existing.artifact_id)
        assert record is not None
        return record

    def mark_corrupt(self, artifact_id: str, reason: str) -> ArtifactRecord:
        """The artifact's blob does not match its SHA-256: quarantine the blob (kept for forensics
        under `blobs/quarantine/`, never served) and the artifact (status QUARANTINED, marked
        corrupt) until a rebuild replaces it. Idempotent."""
        now = self._clock()
        with self._db.write() as conn:
            record = self._artifact(conn, artifact_id)
            if record is None:
                raise ArtifactNotFound(artifact_id)
            if record.corrupt:
                return record
            self._blobs.quarantine(record.file_sha256)
            target = "QUARANTINED" if kernel_move_allowed(record.status, "QUARANTINED") else record.status
            conn.execute(
                "UPDATE artifacts SET status = ?, status_reason = ?, corrupt_at_ns = ?, updated_at_ns = ? "
                "WHERE artifact_id = ?",
                (target, f"corrupt: {reason}", now, now, artifact_id),
            )
            conn.execute(
                "INSERT INTO artifact_status_history (artifact_id, from_status, to_status, reason, at_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (artifact_id, record.status, target, f"corrupt: {reason}", now),
            )
            updated = self._artifact(conn, artifact_id)
            assert updated is not None
            return updated

    def corrupt_artifacts(self) -> list[ArtifactRecord]:
        """Artifacts marked corrupt and not yet rebuilt."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM artifacts WHERE corrupt_at_ns IS NOT NULL ORDER BY corrupt_at_ns").fetchall()
        return [ArtifactRecord.from_row(r) for r in rows]

    def _same_or_conflict(
        self, existing: ArtifactRecord, manifest_bytes: bytes, signature_bytes: bytes, file: Path | BlobRef
    ) -> ArtifactRecord:
        if existing.manifest_bytes != manifest_bytes:
            raise ArtifactConflict(existing.artifact_id, "manifest")
        if existing.signature_bytes != signature_bytes:
            raise ArtifactConflict(existing.artifact_id, "signature")
        if isinstance(file, BlobRef):
            sha = file.sha256
        else:
            digest = hashlib.sha256()
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            sha = digest.hexdigest()
        if sha != existing.file_sha256:
            raise ArtifactConflict(existing.artifact_id, "file (SHA-256)")
        if not self._blobs.is_intact(sha):
            # The row is right but its blob was damaged: the identical re-put restores it.
            self._blobs.put_file(file if isinstance(file, Path) else file.path, max_bytes=self._max_blob_bytes)
        return existing

    def get_artifact(self, artifact_id: str) -> ArtifactRecord:
        """The artifact with this id; `ArtifactNotFound` when there is none."""
        with self._db.read() as conn:
            record = self._artifact(conn, artifact_id)
        if record is None:
            raise ArtifactNotFound(artifact_id)
        return record

    def find_artifact(self, artifact_id: str) -> ArtifactRecord | None:
        with self._db.read() as conn:
            return self._artifact(conn, artifact_id)

    def has_artifact(self, artifact_id: str) -> bool:
        """The L2 check: is an artifact with this id stored (in any status) and not corrupt?"""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM artifacts WHERE artifact_id = ? AND corrupt_at_ns IS NULL", (artifact_id,)
            ).fetchone()
        return row is not None

    def artifact_path(self, artifact_id: str) -> Path:
        """Where the artifact file lies (read-only). Not re-hashed here: the loader checks the
        SHA-256 before it trusts the bytes; use `verify_artifact` for an explicit check."""
        return self._blobs.path_for(self.get_artifact(artifact_id).file_sha256)

    def verify_artifact(self, artifact_id: str) -> BlobRef:
        """Re-hash the artifact's blob; `BlobIntegrityError` when it was altered on disk."""
        return self._blobs.verify(self.get_artifact(artifact_id).file_sha256)

    def list_artifacts(
        self, blueprint_digest: str | None = None, *, status: int | str | None = None
    ) -> list[ArtifactRecord]:
        """Artifacts, oldest first, optionally of one blueprint and/or in one status."""
        clauses: list[str] = []
        params: list[object] = []
        if blueprint_digest is not None:
            clauses.append("blueprint_digest = ?")
            params.append(blueprint_digest)
        if status is not None:
            clauses.append("status = ?")
            params.append(kernel_status_name(status))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM artifacts {where} ORDER BY created_at_ns, artifact_id", tuple(params)
            ).fetchall()
        return [ArtifactRecord.from_row(r) for r in rows]

    def set_kernel_status(self, artifact_id: str, status: int | str, reason: str) -> ArtifactRecord:
        """Move an artifact along the kernel lifecycle, recording why. Setting the status it
        already has is a no-op; a forbidden move raises `InvalidTransition`."""
        target = kernel_status_name(status)
        if not reason:
            raise InvalidInput(f"artifact {artifact_id!r}: a status change needs a reason")
        now = self._clock()
        with self._db.write() as conn:
            record = self._artifact(conn, artifact_id)
            if record is None:
                raise ArtifactNotFound(artifact_id)
            if record.status == target:
                return record
            if not kernel_move_allowed(record.status, target):
                raise InvalidTransition("kernel", artifact_id, record.status, target)
            conn.execute(
                "UPDATE artifacts SET status = ?, status_reason = ?, updated_at_ns = ? WHERE artifact_id = ?",
                (target, reason, now, artifact_id),
            )
            conn.execute(
                "INSERT INTO artifact_status_history (artifact_id, from_status, to_status, reason, at_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (artifact_id, record.status, target, reason, now),
            )
            updated = self._artifact(conn, artifact_id)
            assert updated is not None
            return updated

    def artifact_counts(self) -> dict[str, int]:
        """Artifacts per kernel status."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM artifacts GROUP BY status").fetchall()
        return {row[0]: int(row[1]) for row in rows}
