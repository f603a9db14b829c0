"""The content-addressed blob directory: `blobs/sha256/ab/cdef…`, one file per distinct content.

Owns: writing a blob durably (tmp file in the same directory, fsync, rename, directory fsync),
finding it by its SHA-256, and re-hashing it to prove it is intact. Writes are idempotent: the
same bytes land at the same path once; a damaged blob at the target path is replaced by a put of
the right bytes. Must never delete a blob (Urza hard-deletes nothing) and never touch the database.
Every method blocks on disk I/O: call it through `asyncio.to_thread` from async code.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tezzeret.durable import fsync_dir
from tezzeret.store.errors import BlobIntegrityError, InvalidInput

_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int
    path: Path


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class BlobStore:
    """Blobs under `root/sha256/`. Thread- and process-safe: every write is a rename of a
    private temporary file, so readers see either nothing or the whole blob."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._base = self.root / "sha256"
        self._base.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_HEX.match(sha256):
            raise InvalidInput(f"{sha256!r} is not a lowercase SHA-256 hex digest (64 characters)")
        return self._base / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_file(self, source: Path, *, max_bytes: int | None = None) -> BlobRef:
        """Copy `source` in, hashing while copying, so the address matches the bytes written."""
        source = Path(source)
        if not source.is_file():
            raise InvalidInput(f"{source} is not a readable file; pass the path of the artifact file")
        with open(source, "rb") as src:
            return self._put_stream(iter(lambda: src.read(_CHUNK), b""), max_bytes=max_bytes, what=str(source))

    def put_bytes(self, data: bytes, *, max_bytes: int | None = None) -> BlobRef:
        return self._put_stream(iter((bytes(data),)), max_bytes=max_bytes, what="bytes")

    def put_stream(self, chunks: Iterable[bytes], *, max_bytes: int | None = None, what: str = "stream") -> BlobRef:
        """Write `chunks` as one blob, hashing while writing (read once, never buffered whole)."""
        return self._put_stream(iter(chunks), max_bytes=max_bytes, what=what)

    def _put_stream(self, chunks: Iterator[bytes], *, max_bytes: int | None, what: str) -> BlobRef:
        self._base.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=self._base)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise InvalidInput(
                            f"{what} is larger than the store's limit of {max_bytes} bytes; "
                            "raise `max_blob_bytes` in Store.open or shrink the artifact"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path_for(sha)
            if final.is_file() and _hash_file(final) == (sha, size):
                tmp.unlink()
                return BlobRef(sha, size, final)
            final.parent.mkdir(exist_ok=True)
            # Blobs are immutable: read-only for everyone, the owner included, to catch stray writes.
            os.chmod(tmp, 0o444)
            # rename replaces a damaged blob at the target atomically; a concurrent writer of the
            # same content writes identical bytes, so whichever rename lands last is equally good.
            os.replace(tmp, final)
            fsync_dir(final.parent)
            fsync_dir(self._base)
            return BlobRef(sha, size, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def verify(self, sha256: str) -> BlobRef:
        """Re-hash the blob; raise `BlobIntegrityError` when its bytes no longer match its name."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise BlobIntegrityError(path, sha256, "(missing)")
        actual, size = _hash_file(path)
        if actual != sha256:
            raise BlobIntegrityError(path, sha256, actual)
        return BlobRef(sha256, size, path)

    def quarantine(self, sha256: str) -> Path | None:
        """Move a damaged blob out of the addressable tree (to `quarantine/`) so nothing serves it;
        returns where it went, or None when it was already gone."""
        path = self.path_for(sha256)
        if not path.exists():
            return None
        qdir = self.root / "quarantine"
        qdir.mkdir(parents=True, exist_ok=True)
        target = qdir / f"{sha256}.{os.getpid()}.{time.time_ns()}"
        os.replace(path, target)
        fsync_dir(qdir)
        fsync_dir(path.parent)
        return target

    def total_bytes(self) -> int:
        """Bytes of every addressable blob (for the store-size gauge)."""
        return sum(p.stat().st_size for p in self._base.rglob("*") if p.is_file())

    def is_intact(self, sha256: str) -> bool:
        try:
            self.verify(sha256)
        except BlobIntegrityError:
            return False
        return True

    def copy_out(self, sha256: str, destination: Path) -> Path:
        """Copy a verified blob to `destination` (for download paths that must not hand out ours)."""
        ref = self.verify(sha256)
        shutil.copyfile(ref.path, destination)
        return Path(destination)
