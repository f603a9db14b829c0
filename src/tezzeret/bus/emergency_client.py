"""Tamiyo's side of the emergency path: send a signed `EmergencyCompile`, await ack and result.

Owns: building and signing the request under the caller's own key, XADDing it to
`emergency.stream`, and matching replies on `emergency.reply_stream` (`EmergencyAck`, then
`CompilationComplete`) to requests by `request_id`, verifying each reply's signature against the
keyring. Used by tests, the benchmark, and as the reference for Tamiyo. Must never trust a reply
whose signature does not verify, and never dead-letter other readers' replies (it reads in its own
consumer group and only ignores what is not for it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TypedDict, TypeVar, Unpack

from google.protobuf.message import Message

from tezzeret.bus import topics
from tezzeret.bus.base import Bus, RawDelivery
from tezzeret.bus.envelope import Keyring, open_envelope, seal
from tezzeret.bus.errors import EmergencyTimeout, EnvelopeRejected
from tezzeret.config import Settings
from tezzeret.leyline import SCHEMA_VERSION, pb

log = logging.getLogger(__name__)

# A reply type a future waits for (EmergencyAck or CompilationComplete).
R = TypeVar("R")


def _settle(fut: asyncio.Future[R], reply: R) -> None:
    # The first reply wins; a redelivered one finds the future done.
    if not fut.done():
        fut.set_result(reply)


class SendOptions(TypedDict, total=False):
    """The optional fields of `EmergencyClient.send`, which `request` passes through."""

    request_id: str | None
    reason: str
    batch_sizes: tuple[int, ...]
    deadline_ms: int
    requested_by: str
    issued_at_ns: int | None
    nonce: str | None


class EmergencyClient:
    def __init__(self, bus: Bus, settings: Settings, *, keyring: Keyring | None = None, name: str = "tamiyo") -> None:
        self._bus = bus
        self._settings = settings
        self._keyring = keyring or Keyring.from_settings(settings)
        self._name = name
        self._acks: dict[str, asyncio.Future[pb.EmergencyAck]] = {}
        self._completes: dict[str, asyncio.Future[pb.CompilationComplete]] = {}
        # When each request was handed to XADD (monotonic), for latency measurements.
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self.completed_at: dict[str, float] = {}

    def start(self) -> None:
        """Read the reply stream from now on, in a consumer group of this client's own."""
        now_ms = int(time.time() * 1000)
        self._bus.subscribe_envelopes(
            topics.EMERGENCY_REPLY, self._on_reply,
            group=f"{self._name}-{uuid.uuid4().hex[:12]}", consumer="reader",
            # An explicit id rather than "$": replies are caught even if the group is created late.
            start_id=f"{now_ms - 1}-0",
        )

    async def send(
        self,
        ir: pb.BlueprintIR,
        *,
        key_id: str,
        secret: bytes | None,
        request_id: str | None = None,
        reason: str = "",
        batch_sizes: tuple[int, ...] = (),
        deadline_ms: int = 0,
        requested_by: str = "tamiyo",
        issued_at_ns: int | None = None,
        nonce: str | None = None,
    ) -> str:
        """XADD one request and return its request id; `secret=None` sends it unsigned."""
        rid = request_id or uuid.uuid4().hex
        now_ns = time.time_ns() if issued_at_ns is None else issued_at_ns
        req = pb.EmergencyCompile(
            schema_version=SCHEMA_VERSION, request_id=rid, blueprint_id=ir.metadata.blueprint_id,
            requested_by=requested_by, reason=reason, deadline_ms=deadline_ms,
            issued_at_ns=now_ns, nonce=nonce or uuid.uuid4().hex,
        )
        req.blueprint.CopyFrom(ir)
        req.batch_sizes.extend(batch_sizes)
        env = seal(req, key_id=key_id, secret=secret or b"", message_id=rid, issued_at_ns=now_ns)
        if secret is None:
            env.ClearField("signature")
        self._future(self._acks, rid)
        self._future(self._completes, rid)
        self.sent_at[rid] = time.monotonic()
        await self._bus.publish_envelope(topics.EMERGENCY, env)
        return rid

    async def wait_ack(self, request_id: str, timeout_s: float = 5.0) -> pb.EmergencyAck:
        fut = self._future(self._acks, request_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            raise EmergencyTimeout(request_id, "EmergencyAck", timeout_s) from None

    async def request(
        self, ir: pb.BlueprintIR, *, key_id: str, secret: bytes | None, timeout_s: float = 5.0,
        **options: Unpack[SendOptions],
    ) -> tuple[str, pb.EmergencyAck]:
        """Send and wait for the acknowledgement: `(request_id, ack)`."""
        rid = await self.send(ir, key_id=key_id, secret=secret, **options)
        return rid, await self.wait_ack(rid, timeout_s)

    async def wait_complete(self, request_id: str, timeout_s: float) -> pb.CompilationComplete:
        fut = self._future(self._completes, request_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            raise EmergencyTimeout(request_id, "CompilationComplete", timeout_s) from None

    def _future(self, table: dict[str, asyncio.Future[R]], rid: str) -> asyncio.Future[R]:
        fut = table.get(rid)
        if fut is None:
            fut = table[rid] = asyncio.get_running_loop().create_future()
        return fut

    async def _on_reply(self, raw: RawDelivery) -> None:
        try:
            opened = open_envelope(raw.data, self._keyring, raw.topic)
        except EnvelopeRejected as exc:
            log.warning("emergency client: ignoring reply %s: %s", raw.stream_id, exc.reason)
            return
        message: Message = opened.message
        rid = getattr(message, "request_id", "")
        if rid not in self.sent_at:
            return  # another client's request
        now = time.monotonic()
        # The reply topic carries exactly these two types (`open_envelope` checks).
        if isinstance(message, pb.EmergencyAck):
            self.acked_at.setdefault(rid, now)
            _settle(self._future(self._acks, rid), message)
        elif isinstance(message, pb.CompilationComplete):
            self.completed_at.setdefault(rid, now)
            _settle(self._future(self._completes, rid), message)
