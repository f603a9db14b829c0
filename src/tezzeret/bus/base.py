"""The bus interface every backend implements, and the records it hands to consumers.

Owns: `Bus` (the Protocol the forge codes against), `Delivery` (a verified, decoded message),
`RawDelivery` (envelope bytes as stored, for listeners that verify themselves), `DeadLetter`, and
the `BreakerLike` shape the bus accepts. Must never hold state or do I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from google.protobuf.message import Message

from tezzeret.leyline import pb


@dataclass(frozen=True)
class RawDelivery:
    """One stored entry as delivered to a consumer group member, before any verification."""

    topic: str
    stream_id: str
    data: bytes
    delivery_count: int
    # Milliseconds since the epoch at which the entry was appended (the stream id's time part).
    enqueued_ms: int


@dataclass(frozen=True)
class Delivery:
    """A message whose envelope verified and whose payload decoded."""

    topic: str
    message: Message
    message_type: str
    message_id: str
    delivery_count: int
    key_id: str
    roles: frozenset[str]
    stream_id: str
    enqueued_ms: int
    issued_at_ns: int
    envelope: pb.BusEnvelope = field(repr=False)


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    origin_id: str
    reason: str
    deliveries: int
    data: bytes = field(repr=False)


Handler = Callable[[Delivery], Awaitable[None]]
RawHandler = Callable[[RawDelivery], Awaitable[None]]


@runtime_checkable
class BreakerLike(Protocol):
    def allow(self) -> bool: ...

    def record_success(self) -> Any: ...

    def record_failure(self, reason: str) -> Any: ...


class Bus(Protocol):
    """Oona as the forge sees it. Delivery is at least once: consumers dedupe by `message_id`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        """Sign and send `message`; returns its message id (buffered, not lost, if Redis is away)."""
        ...

    async def publish_now(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        """Sign and send `message` now, unbuffered; raises when the bus cannot take it (for callers
        that keep their own durable copy, like the forge's outbox)."""
        ...

    def subscribe(self, topic: str, handler: Handler, *, group: str, consumer: str) -> None:
        """Deliver verified messages to `handler`; normal return ACKs, an exception redelivers."""
        ...

    async def publish_envelope(self, topic: str, envelope: pb.BusEnvelope) -> str:
        """Send an already-sealed envelope (another party's key); returns the stream id."""
        ...

    def subscribe_envelopes(
        self, topic: str, handler: RawHandler, *, group: str, consumer: str, start_id: str = "0",
        batch: int | None = None,
    ) -> None:
        """Deliver raw entries; raising `EnvelopeRejected` dead-letters, other errors redeliver.

        `batch` caps how many entries one read takes (1 spreads work over several consumers)."""
        ...

    async def dead_letters(self, topic: str) -> list[DeadLetter]: ...

    def health(self) -> dict[str, Any]: ...
