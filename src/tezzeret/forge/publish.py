"""Announcing results on Oona: `CompilationComplete` (Urabrask, the emergency reply stream) and
`KernelCatalogUpdate` (Kasmina and everyone), through a durable outbox.

Owns: building a job's events from its result and manifest as `pb.OutboxEvent`s (topic, a message
id stable across republishing, the serialised message), which the runner records in the journal
with the job's end, and sending recorded events to the bus. Publishing never fails a job: the
artifact is already stored and committed; events the bus refused stay recorded and are sent
again after recovery. Must never touch the store or the WAL (the journal records; this sends).
"""

from __future__ import annotations

import logging
from typing import Any

from tezzeret import metrics
from tezzeret.bus.topics import EMERGENCY_REPLY, KERNEL_READY, KERNELS_CATALOG
from tezzeret.leyline import SCHEMA_VERSION, decode, encode, pb

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
    if result.HasField("strategy_requested"):
        ev.strategy_requested = result.strategy_requested
        ev.fallback_reason = result.fallback_reason
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


_TYPES: dict[str, Any] = {
    "leyline.CompilationComplete": pb.CompilationComplete,
    "leyline.KernelCatalogUpdate": pb.KernelCatalogUpdate,
}


def _event(topic: str, message_id: str, message: Any) -> pb.OutboxEvent:
    return pb.OutboxEvent(topic=topic, message_id=message_id, type=message.DESCRIPTOR.full_name, payload=encode(message))


def outbox_for(job: Any, result: pb.CompilationResult, manifest: pb.CompiledKernelArtifact | None) -> list[pb.OutboxEvent]:
    """Every event a job's end announces: `kernel.ready` (always), `kernels.catalog` (a stored
    artifact), and one emergency reply per Tamiyo request the job carried. Message ids derive from
    the artifact and request ids, so a republish after recovery is dropped downstream."""
    job.replies_sealed = True
    complete = completion_event(request_id=result.request_id, blueprint_id=job.digest, result=result, manifest=manifest)
    ready_id = f"ready:{result.artifact_id}:{result.request_id}"
    complete.event_id = ready_id
    events = [_event(KERNEL_READY, ready_id, complete)]
    if manifest is not None and result.outcome == pb.OUTCOME_SUCCESS:
        catalog = catalog_event(manifest, result.artifact_ref)
        catalog.event_id = f"catalog:{manifest.artifact_id}"
        events.append(_event(KERNELS_CATALOG, catalog.event_id, catalog))
    for request_id in job.emergency_requests:
        reply = completion_event(request_id=request_id, blueprint_id=job.digest, result=result, manifest=None)
        reply.event_id = f"emergency-done:{request_id}"
        events.append(_event(EMERGENCY_REPLY, reply.event_id, reply))
    return events


class Publisher:
    """Sends events on a bus that implements `publish_now(topic, message, message_id=...)`."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    async def send(self, topic: str, message: Any, message_id: str) -> bool:
        """XADD now; False when the bus cannot take it (the caller's durable copy is retried)."""
        if self.bus is None:
            return False
        try:
            await self.bus.publish_now(topic, message, message_id=message_id)
            return True
        except Exception as exc:  # noqa: BLE001 - the artifact is committed; the event waits in the outbox
            log.warning("publishing %s on %s failed (kept for a retry): %s", message_id, topic, exc)
            metrics.BUS_EVENTS.labels(topic=topic, result="publish_failed").inc()
            return False

    async def emergency_reply(self, complete: pb.CompilationComplete) -> None:
        complete.event_id = f"emergency-done:{complete.request_id}"
        await self.send(EMERGENCY_REPLY, complete, complete.event_id)

    async def publish_outbox(self, events: list[pb.OutboxEvent]) -> bool:
        """Send recorded events in order, stopping at the first the bus refuses (the rest keep their
        order for the retry); True when the bus took every one."""
        for event in events:
            kind = _TYPES.get(event.type)
            if kind is None:
                log.error("outbox event %s has unknown type %r; dropped", event.message_id, event.type)
                continue
            if not await self.send(event.topic, decode(kind, event.payload), event.message_id):
                return False
        return True
