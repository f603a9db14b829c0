"""Announcing results on Oona: `CompilationComplete` (Urabrask, the emergency reply stream) and
`KernelCatalogUpdate` (Kasmina and everyone).

Owns: building those two events from a job's result and manifest, and handing them to the bus.
Publishing never fails a job: the artifact is already stored and committed, and the bus buffers
while Redis is away; an error here is logged and counted. Must never touch the store or the WAL.
"""

from __future__ import annotations

import logging
from typing import Any

from tezzeret import metrics
from tezzeret.bus.topics import EMERGENCY_REPLY, KERNEL_READY, KERNELS_CATALOG
from tezzeret.leyline import SCHEMA_VERSION, pb

log = logging.getLogger(__name__)


def completion_event(
    *,
    request_id: str,
    blueprint_id: str,
    result: pb.CompilationResult,
    manifest: pb.CompiledKernelArtifact | None,
) -> pb.CompilationComplete:
    ev = pb.CompilationComplete(
        schema_version=SCHEMA_VERSION,
        request_id=request_id,
        blueprint_id=blueprint_id,
        artifact_id=result.artifact_id,
        strategy=result.strategy_used,
        status=result.outcome,
        compilation_time_ms=result.compilation_time_ms,
        peak_memory_mb=result.peak_rss_bytes / (1024 * 1024),
        artifact_ref=result.artifact_ref,
        sha256=result.payload_sha256,
        conservative_mode=result.conservative_mode,
        from_cache=result.from_cache,
    )
    if result.error:
        ev.error = result.error
    if manifest is not None:
        ev.toolchain_version = manifest.toolchain_hash
        ev.guard_digest = manifest.guard_digest
        ev.target = manifest.target
        ev.sha256 = manifest.payload_sha256
    return ev


def catalog_event(manifest: pb.CompiledKernelArtifact, artifact_ref: str) -> pb.KernelCatalogUpdate:
    return pb.KernelCatalogUpdate(
        schema_version=SCHEMA_VERSION,
        blueprint_id=manifest.blueprint_digest,
        artifact_id=manifest.artifact_id,
        artifact_ref=artifact_ref,
        checksum=manifest.payload_sha256,
        guard_digest=manifest.guard_digest,
        compile_ms=manifest.stats.compile_ms,
        strategy=manifest.strategy,
        target=manifest.target,
        status=pb.KERNEL_PENDING_BENCHMARKING,
    )


class Publisher:
    """Sends events on a bus that implements `publish(topic, message, message_id=...)`."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    async def send(self, topic: str, message: Any, message_id: str) -> bool:
        if self.bus is None:
            return False
        try:
            await self.bus.publish(topic, message, message_id=message_id)
            return True
        except Exception as exc:  # noqa: BLE001 - the artifact is committed; an event is best effort
            log.warning("publishing %s on %s failed: %s", message_id, topic, exc)
            metrics.BUS_EVENTS.labels(topic=topic, result="publish_failed").inc()
            return False

    async def artifact_ready(
        self, complete: pb.CompilationComplete, manifest: pb.CompiledKernelArtifact | None
    ) -> None:
        # Message ids derive from the artifact id so a republish after recovery dedupes downstream.
        await self.send(KERNEL_READY, complete, f"ready:{complete.artifact_id}:{complete.request_id}")
        if manifest is not None and complete.status == pb.OUTCOME_SUCCESS:
            await self.send(
                KERNELS_CATALOG,
                catalog_event(manifest, complete.artifact_ref),
                f"catalog:{manifest.artifact_id}",
            )

    async def emergency_reply(self, complete: pb.CompilationComplete) -> None:
        await self.send(EMERGENCY_REPLY, complete, f"emergency-done:{complete.request_id}")
