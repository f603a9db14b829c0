"""The forge re-verifies what it serves: every artifact blob's SHA-256, before it leaves the store.

Owns: `StoreIntegrity.check`, which every read of a blob goes through (download, FROM_CACHE
answers, the L2 hit at intake): the blob is re-hashed once per process and then again after
`memory_management.artifact_ttl_seconds` (the verified set is a TTL cache, so the work is bounded
and not per byte served); and `scrub`, the background walk over every stored blob. A mismatch
quarantines the blob and marks the artifact corrupt in the store (`Store.mark_corrupt`), counts it
(`tezzeret_store_scrub_findings_total{found_by}`), and tells the forge, which queues a rebuild from
the stored IR and shows it in health. Must never serve, load or delete anything: it checks, and
reports what it found.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tezzeret import metrics
from tezzeret.forge.errors import ForgeError
from tezzeret.resilience.ttl import TTLCache
from tezzeret.store import ArtifactRecord, Store
from tezzeret.store.errors import BlobIntegrityError

log = logging.getLogger(__name__)

OnCorrupt = Callable[[ArtifactRecord, str], Awaitable[None]]


class ArtifactDamaged(ForgeError):
    """The artifact's stored bytes failed their SHA-256 check; it is quarantined and rebuilt."""

    code = "ARTIFACT_CORRUPT"
    http_status = 503


@dataclass
class ScrubReport:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "corrupt": list(self.corrupt)}


class StoreIntegrity:
    def __init__(self, store: Store, verified: TTLCache[str, str], on_corrupt: OnCorrupt) -> None:
        self.store = store
        # artifact id -> the blob SHA-256 verified for it (until its TTL runs out).
        self._verified = verified
        self._on_corrupt = on_corrupt
        self.scrubs = 0
        self.last_scrub: ScrubReport | None = None

    async def check(self, artifact_id: str, found_by: str) -> ArtifactRecord:
        """The artifact's record once its blob is known intact; `ArtifactDamaged` when it is not
        (the artifact is quarantined and a rebuild queued before this raises)."""
        record = await asyncio.to_thread(self.store.get_artifact, artifact_id)
        if record.corrupt:
            raise self._damaged(record)
        if self._verified.get(artifact_id) == record.file_sha256:
            return record
        return await self._verify(record, found_by)

    async def _verify(self, record: ArtifactRecord, found_by: str) -> ArtifactRecord:
        try:
            await asyncio.to_thread(self.store.verify_artifact, record.artifact_id)
        except BlobIntegrityError as exc:
            await self._found_corrupt(record, found_by, str(exc))
            raise self._damaged(record) from None
        self._verified.put(record.artifact_id, record.file_sha256)
        return record

    async def _found_corrupt(self, record: ArtifactRecord, found_by: str, why: str) -> None:
        log.error("artifact %s is corrupt (found by %s): %s", record.artifact_id, found_by, why)
        metrics.STORE_SCRUB_FINDINGS.labels(found_by=found_by).inc()
        self._verified.pop(record.artifact_id)
        marked = await asyncio.to_thread(self.store.mark_corrupt, record.artifact_id, why)
        await self._on_corrupt(marked, found_by)

    @staticmethod
    def _damaged(record: ArtifactRecord) -> ArtifactDamaged:
        return ArtifactDamaged(
            f"artifact {record.artifact_id}: its stored bytes failed their SHA-256 check; it is quarantined "
            "and a rebuild from the stored blueprint is queued: retry once that job ends",
            artifact_id=record.artifact_id,
        )

    async def scrub(self, *, pause: Callable[[], bool] = lambda: False) -> ScrubReport:
        """Re-hash every stored blob not marked corrupt (one at a time, in a thread), pausing while
        `pause()` says so (user work waits)."""
        report = ScrubReport()
        records = await asyncio.to_thread(self.store.list_artifacts)
        for record in records:
            if record.corrupt:
                continue
            while pause():
                await asyncio.sleep(1.0)
            report.checked += 1
            try:
                await self._verify(record, "scrub")
            except ArtifactDamaged:
                report.corrupt.append(record.artifact_id)
        self.scrubs += 1
        self.last_scrub = report
        metrics.STORE_SCRUBS.inc()
        return report
