"""Tamiyo's emergency path, Tezzeret's side: the listener on `emergency.stream`.

Owns: turning each entry on the emergency stream into exactly one `EmergencyAck` on the reply
stream — after checking the envelope's HMAC, that the key's roles include `emergency`, freshness
(`emergency.freshness_window_s`), nonce replay and the `emergency.max_per_min` token bucket —
calling the forge's handler for admitted requests, auditing every request with its outcome, and
observing the XADD-to-ack latency into `tezzeret_emergency_ack_ms`. The read is a blocking
XREADGROUP on a dedicated connection (the bus's subscription), so there is no polling delay.
Must never compile, never run the handler for a refused request, and never leave a request
without an answer it can give (a handler failure becomes a refused ack with the reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tezzeret.bus import topics
from tezzeret.bus.base import Bus, RawDelivery
from tezzeret.bus.envelope import Keyring, authenticate, parse, seal
from tezzeret.bus.errors import EnvelopeRejected
from tezzeret.bus.idempotency import SeenSet
from tezzeret.bus.ratelimit import TokenBucket
from tezzeret.config import Settings
from tezzeret.leyline import SCHEMA_VERSION, ContractError, decode, pb
from tezzeret.metrics import BUS_EVENTS, EMERGENCY_ACK_MS

log = logging.getLogger(__name__)

ROLE = "emergency"


@dataclass(frozen=True)
class EmergencyCaller:
    """Who sent an admitted emergency request, and how it arrived."""

    key_id: str
    roles: frozenset[str]
    requested_by: str
    stream_id: str
    delivery_count: int
    enqueued_ms: int


EmergencyHandler = Callable[[pb.EmergencyCompile, EmergencyCaller], Awaitable[pb.EmergencyAck]]
AuditHook = Callable[[dict[str, Any]], None]


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmergencyListener:
    """Answers every emergency request on the reply stream. `bus` may be Redis or in-process."""

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        handler: EmergencyHandler,
        *,
        audit: AuditHook | None = None,
        keyring: Keyring | None = None,
        consumer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        concurrency: int = 4,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._handler = handler
        self._audit = audit
        self._keyring = keyring or Keyring.from_settings(settings)
        self._signer = self._keyring.get(settings.bus.signing_key_id)
        self._consumer = consumer or f"tezzeret-{uuid.uuid4().hex[:8]}"
        self._wall_ns = wall_ns
        # Consumers reading the stream side by side: a burst is not answered one handler call
        # after another (each takes a WAL write in the forge), so the tail of the ack latency stays
        # short. Checks that must see every request (nonces, the bucket) run before any await.
        self._concurrency = max(1, concurrency)
        # Decisions that missed the ack deadline and go on (kept referenced until they end).
        self._late: set[asyncio.Future[pb.EmergencyAck]] = set()
        window = settings.emergency.freshness_window_s
        self._window_ns = int(window * 1e9)
        # A nonce must be remembered as long as a request carrying it could still pass freshness.
        self._nonces = SeenSet(ttl_s=2 * window, clock=clock)
        self._bucket = TokenBucket(settings.emergency.max_per_min, clock=clock)
        self.accepted = 0
        self.refused = 0

    def start(self) -> None:
        """Subscribe on the emergency stream; the bus delivers once it is started."""
        for i in range(self._concurrency):
            self._bus.subscribe_envelopes(
                topics.EMERGENCY, self._on_entry,
                group=self._settings.emergency.consumer_group,
                consumer=self._consumer if self._concurrency == 1 else f"{self._consumer}-{i}",
                batch=1 if self._concurrency > 1 else None,
            )

    async def _on_entry(self, raw: RawDelivery) -> None:
        request_id, key_id, requested_by, blueprint_id = "", "", "", ""
        nonce_key = ""
        try:
            try:
                env = parse(raw.data)
                request_id = env.message_id
                key = authenticate(env, self._keyring)
            except EnvelopeRejected as exc:
                key_id = exc.key_id
                raise _Refused(exc.reason) from None
            key_id = key.key_id
            if ROLE not in key.roles:
                raise _Refused(f"key {key_id!r} lacks role {ROLE!r} (has {sorted(key.roles)})")
            if env.message_type != topics.type_name(pb.EmergencyCompile):
                raise _Refused(f"expected {topics.type_name(pb.EmergencyCompile)}, got {env.message_type!r}")
            try:
                req = decode(pb.EmergencyCompile, env.payload)
            except ContractError as exc:
                raise _Refused(f"undecodable EmergencyCompile ({exc.reason})") from None
            request_id = req.request_id or env.message_id
            requested_by = req.requested_by
            blueprint_id = req.blueprint_id or req.blueprint.metadata.blueprint_id
            issued = req.issued_at_ns or env.issued_at_ns
            age_ns = self._wall_ns() - issued
            if not issued or abs(age_ns) > self._window_ns:
                raise _Refused(
                    f"stale request: issued {age_ns / 1e9:.1f} s from now, outside "
                    f"emergency.freshness_window_s={self._settings.emergency.freshness_window_s:g}"
                )
            nonce_key = f"{key_id}:{req.nonce or env.message_id}"
            earlier = self._nonces.get(nonce_key)
            if isinstance(earlier, tuple):
                first_sid, first_ack = earlier
                if first_sid == raw.stream_id and isinstance(first_ack, pb.EmergencyAck):
                    # A redelivery of our own unacknowledged entry: answer exactly as before.
                    await self._reply(first_ack, raw, record=False)
                    return
                raise _Refused(f"replayed nonce {req.nonce or env.message_id!r} (first seen as {first_sid})")
            self._nonces.add(nonce_key, (raw.stream_id, None))
            if not self._bucket.try_take():
                raise _Refused(
                    f"rate limit: more than emergency.max_per_min={self._settings.emergency.max_per_min} requests"
                )
            caller = EmergencyCaller(key_id, key.roles, requested_by, raw.stream_id, raw.delivery_count, raw.enqueued_ms)
            # Tamiyo waits `emergency.ack_timeout_ms` from its XADD; what is left of that is ours.
            waited_s = max(0.0, (self._wall_ns() / 1e6 - raw.enqueued_ms) / 1000) if raw.enqueued_ms else 0.0
            left_s = max(0.05, self._settings.emergency.ack_timeout_ms / 1000 - waited_s)
            decision = asyncio.ensure_future(self._handler(req, caller))
            try:
                ack = await asyncio.wait_for(asyncio.shield(decision), left_s)
            except TimeoutError:
                # The decision goes on and is remembered by request id: a resend learns it.
                self._late.add(decision)
                decision.add_done_callback(self._late.discard)
                raise _Refused(
                    f"ACK_TIMEOUT: no decision within emergency.ack_timeout_ms="
                    f"{self._settings.emergency.ack_timeout_ms}; it may still be admitted: resend with the "
                    "same request_id to learn the answer"
                ) from None
            except Exception as exc:  # noqa: BLE001 - the caller must still get an answer
                log.exception("emergency: handler failed for %s", request_id)
                raise _Refused(f"the forge could not accept the request: {type(exc).__name__}: {exc}") from None
        except _Refused as refusal:
            ack = pb.EmergencyAck(accepted=False, reason=refusal.reason)
        ack.schema_version = SCHEMA_VERSION
        ack.request_id = request_id
        ack.acked_at_ns = self._wall_ns()
        if nonce_key and nonce_key in self._nonces and self._nonces.get(nonce_key) == (raw.stream_id, None):
            self._nonces.add(nonce_key, (raw.stream_id, ack))
        self._record(ack, raw, key_id=key_id, requested_by=requested_by, blueprint_id=blueprint_id)
        await self._reply(ack, raw, record=True)

    async def _reply(self, ack: pb.EmergencyAck, raw: RawDelivery, *, record: bool) -> None:
        env = seal(ack, key_id=self._signer.key_id, secret=self._signer.secret,
                   message_id=f"ack-{ack.request_id}-{raw.stream_id}")
        await self._bus.publish_envelope(topics.EMERGENCY_REPLY, env)
        if record:
            EMERGENCY_ACK_MS.observe(max(0.0, time.time() * 1000 - raw.enqueued_ms))

    def _record(self, ack: pb.EmergencyAck, raw: RawDelivery, *, key_id: str, requested_by: str, blueprint_id: str) -> None:
        outcome = "accepted" if ack.accepted else "refused"
        if ack.accepted:
            self.accepted += 1
        else:
            self.refused += 1
            log.warning("emergency: refused %s from key %r: %s", ack.request_id, key_id, ack.reason)
        BUS_EVENTS.labels(topics.EMERGENCY, outcome).inc()
        if self._audit is None:
            return
        record = {
            "ts_ns": ack.acked_at_ns,
            "event": "emergency_compile",
            "outcome": outcome,
            "reason": ack.reason,
            "request_id": ack.request_id,
            "key_id": key_id,
            "requested_by": requested_by,
            "blueprint_id": blueprint_id,
            "stream_id": raw.stream_id,
            "delivery_count": raw.delivery_count,
        }
        try:
            self._audit(record)
        except Exception:  # noqa: BLE001 - a broken audit sink must not withhold the answer
            log.exception("emergency: audit hook failed for %s", ack.request_id)
