"""What happens to one delivered entry, the same on every backend.

Owns: the delivery rule — a handler that returns normally ACKs; one that raises leaves the entry for
redelivery; `EnvelopeRejected` (bad bytes, bad signature, missing role, wrong type) dead-letters at
once without reaching the consumer's handler; past `bus.max_deliveries` the entry is dead-lettered
with the last error as the reason. Must never swallow cancellation or retry on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from tezzeret.bus.base import Delivery, Handler, RawDelivery, RawHandler
from tezzeret.bus.envelope import Keyring, open_envelope
from tezzeret.bus.errors import EnvelopeRejected
from tezzeret.metrics import BUS_EVENTS

log = logging.getLogger(__name__)


class LastErrors:
    """The last handler error per entry, so a dead letter can say why; bounded."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._errors: OrderedDict[str, str] = OrderedDict()

    def record(self, stream_id: str, error: str) -> None:
        self._errors[stream_id] = error
        self._errors.move_to_end(stream_id)
        while len(self._errors) > self._limit:
            self._errors.popitem(last=False)

    def pop(self, stream_id: str) -> str | None:
        return self._errors.pop(stream_id, None)


def verified(handler: Handler, keyring: Keyring) -> RawHandler:
    """A raw handler that verifies and decodes before calling `handler`."""

    async def run(raw: RawDelivery) -> None:
        opened = open_envelope(raw.data, keyring, raw.topic)
        env = opened.envelope
        await handler(
            Delivery(
                topic=raw.topic,
                message=opened.message,
                message_type=opened.message_type,
                message_id=env.message_id,
                delivery_count=raw.delivery_count,
                key_id=opened.key_id,
                roles=opened.roles,
                stream_id=raw.stream_id,
                enqueued_ms=raw.enqueued_ms,
                issued_at_ns=env.issued_at_ns,
                envelope=env,
            )
        )

    return run


async def dispatch(
    raw: RawDelivery,
    handler: RawHandler,
    *,
    max_deliveries: int,
    errors: LastErrors,
    ack: Callable[[], Awaitable[None]],
    dead_letter: Callable[[str], Awaitable[None]],
) -> None:
    """Run `handler` on `raw` and settle the entry: ACK, leave pending, or dead-letter."""
    if raw.delivery_count > max_deliveries:
        last = errors.pop(raw.stream_id) or "the consumer died or timed out before ACK"
        await dead_letter(
            f"not acknowledged after {raw.delivery_count - 1} deliveries "
            f"(bus.max_deliveries={max_deliveries}); last error: {last}"
        )
        BUS_EVENTS.labels(raw.topic, "dead_lettered").inc()
        return
    try:
        await handler(raw)
    except asyncio.CancelledError:
        raise
    except EnvelopeRejected as exc:
        await dead_letter(exc.reason)
        BUS_EVENTS.labels(raw.topic, "rejected").inc()
        return
    except Exception as exc:  # noqa: BLE001 - any consumer failure means "redeliver"
        error = f"{type(exc).__name__}: {exc}"
        BUS_EVENTS.labels(raw.topic, "handler_failed").inc()
        if raw.delivery_count >= max_deliveries:
            errors.pop(raw.stream_id)
            await dead_letter(
                f"handler failed on delivery {raw.delivery_count} of "
                f"bus.max_deliveries={max_deliveries}: {error}"
            )
            BUS_EVENTS.labels(raw.topic, "dead_lettered").inc()
            return
        errors.record(raw.stream_id, error)
        log.warning("bus: %s %s delivery %d failed, left for redelivery: %s",
                    raw.topic, raw.stream_id, raw.delivery_count, error)
        return
    errors.pop(raw.stream_id)
    await ack()
    BUS_EVENTS.labels(raw.topic, "acked").inc()
