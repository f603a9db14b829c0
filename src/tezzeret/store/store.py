"""`Store`: Urza embedded. One directory holding `urza.sqlite3` and `blobs/`.

Owns: opening and closing the pieces and composing the blueprint and artifact tables into the one
object the forge, API and loader use. Must never compile, sign or load anything.

Threading: every method blocks (SQLite or disk) and is safe to call from many threads at once
(one SQLite connection per thread; writes serialise on SQLite's write lock) and from several
processes sharing the directory. From asyncio, call methods through `asyncio.to_thread`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tezzeret.store.artifacts import ArtifactTable
from tezzeret.store.blobs import BlobStore
from tezzeret.store.blueprints import BlueprintTable
from tezzeret.store.db import DB_FILENAME, Database

# Urza refuses objects over 100 MB (upstream §7.3).
DEFAULT_MAX_BLOB_BYTES = 100 * 1024 * 1024


class Store(BlueprintTable, ArtifactTable):
    """Blueprints and artifacts. Build it with `Store.open(directory)`."""

    def __init__(
        self,
        directory: Path,
        db: Database,
        blobs: BlobStore,
        *,
        clock: Callable[[], int],
        max_blob_bytes: int,
    ) -> None:
        self.directory = directory
        self._db = db
        self._blobs = blobs
        self._clock = clock
        self._max_blob_bytes = max_blob_bytes

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        clock: Callable[[], int] = time.time_ns,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    ) -> Store:
        """Open (creating and migrating on first use) the store in `directory`. `clock` returns
        wall-clock nanoseconds; tests pass their own to age records."""
        directory = Path(directory)
        fresh = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        if fresh:
            os.chmod(directory, 0o700)
        db = Database(directory / DB_FILENAME)
        return cls(directory, db, BlobStore(directory / "blobs"), clock=clock, max_blob_bytes=max_blob_bytes)

    @property
    def db_path(self) -> Path:
        return self._db.path

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    def schema_version(self) -> int:
        return self._db.schema_version()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
