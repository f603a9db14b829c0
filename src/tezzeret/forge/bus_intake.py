"""Intake from Oona: Karn's `compilation.blueprint.submitted`, `compilation.request`, Urabrask's
`validation.kernel.characterized`, and Tamiyo's emergency stream (through the bus's
`EmergencyListener`, which authenticates, rate-limits and acknowledges).

Owns: subscribing the forge's handlers and turning each delivered message into a forge call.
Delivery is at least once, so every handler is idempotent (submissions dedupe by artifact id,
status moves to the current state are no-ops). A message the forge refuses for its content (an
invalid blueprint) is logged and acknowledged, not redelivered; an unexpected error re-raises so
the bus redelivers and, after `bus.max_deliveries`, dead-letters it. Must never compile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from tezzeret.bus import EmergencyListener, topics
from tezzeret.bus.base import Bus, Delivery
from tezzeret.config import Settings
from tezzeret.forge.audit import AuditLog
from tezzeret.forge.errors import ForgeError
from tezzeret.forge.polling import Submit
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.store import Store, StoreError

HandleEmergency = Callable[[pb.EmergencyCompile, Any], Awaitable[pb.EmergencyAck]]

log = logging.getLogger(__name__)


class BusIntake:
    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        *,
        submit: Submit,
        handle_emergency: HandleEmergency,
        store: Store,
        audit: AuditLog,
        instance_id: str,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.submit = submit
        self.handle_emergency = handle_emergency
        self.store = store
        self.audit = audit
        self.instance_id = instance_id
        self.emergency: EmergencyListener | None = None
        self.received = 0
        self.refused = 0

    def subscribe(self) -> None:
        group = self.settings.bus.consumer_group
        consumer = f"forge-{self.instance_id}".replace(":", "-")
        self.bus.subscribe(topics.BLUEPRINT_SUBMITTED, self.on_blueprint, group=group, consumer=consumer)
        self.bus.subscribe(topics.COMPILATION_REQUEST, self.on_request, group=group, consumer=consumer)
        self.bus.subscribe(topics.KERNEL_CHARACTERIZED, self.on_characterized, group=group, consumer=consumer)
        if self.settings.compilation.enable_emergency_compilation:
            self.emergency = EmergencyListener(
                self.bus, self.settings, self.handle_emergency, audit=self._audit_emergency, consumer=consumer
            )
            self.emergency.start()

    def _audit_emergency(self, record: dict[str, Any]) -> None:
        self.audit.record(
            requestor=record.get("key_id") or "unknown-key",
            action="emergency_compile(bus)",
            blueprint=record.get("blueprint_id") or None,
            outcome=record.get("outcome", ""),
            reason=record.get("reason") or None,
            request_id=record.get("request_id"),
        )

    async def _submit(self, request: pb.CompilationRequest, source: str) -> None:
        self.received += 1
        try:
            await self.submit(request, source)
        except ForgeError as exc:
            self.refused += 1
            log.warning("%s: refused %s: %s", source, request.request_id or request.blueprint_id, exc)

    async def on_blueprint(self, delivery: Delivery) -> None:
        msg = cast(pb.BlueprintSubmitted, delivery.message)  # the topic subscribed with this type
        request = pb.CompilationRequest(
            schema_version=SCHEMA_VERSION,
            request_id=delivery.message_id,
            blueprint_id=msg.blueprint_id,
            # Emergency work only through the authenticated emergency stream.
            priority=pb.PRIORITY_STRATEGIC if msg.priority == pb.PRIORITY_EMERGENCY else msg.priority,
            requested_by=f"karn:{delivery.key_id}",
        )
        if msg.HasField("blueprint"):
            request.blueprint.CopyFrom(msg.blueprint)
        await self._submit(request, "karn")

    async def on_request(self, delivery: Delivery) -> None:
        request = pb.CompilationRequest()
        request.CopyFrom(cast(pb.CompilationRequest, delivery.message))
        if request.priority == pb.PRIORITY_EMERGENCY:
            # Emergency work only through the authenticated emergency stream.
            request.priority = pb.PRIORITY_STRATEGIC
        request.requested_by = request.requested_by or f"oona:{delivery.key_id}"
        request.request_id = request.request_id or delivery.message_id
        await self._submit(request, "oona")

    async def on_characterized(self, delivery: Delivery) -> None:
        msg = cast(pb.KernelCharacterized, delivery.message)  # the topic subscribed with this type
        if msg.status == pb.KERNEL_UNSPECIFIED or not msg.artifact_id:
            log.warning("characterized: ignoring %s without artifact id or status", delivery.message_id)
            return
        try:
            await asyncio.to_thread(
                self.store.set_kernel_status, msg.artifact_id, msg.status, msg.reason or "urabrask"
            )
        except StoreError as exc:
            log.warning("characterized: %s not applied: %s", msg.artifact_id, exc)
