"""Stage: bus — Oona, Esper's message bus, and the Tamiyo emergency queue (see ARCHITECTURE.md).

Owns: publish/subscribe of signed Leyline envelopes on Tezzeret's topics, in process by default
and on Redis Streams when `redis_url` is set (consumer groups, XAUTOCLAIM, dead letters, an outbox
guarded by the `bus` breaker), and the emergency listener/client. Must never import the forge, the
api, or any compile stage: the forge hands the bus its handlers.
"""

from tezzeret.bus import topics
from tezzeret.bus.base import BreakerLike, Bus, DeadLetter, Delivery, Handler, RawDelivery, RawHandler
from tezzeret.bus.emergency import EmergencyCaller, EmergencyHandler, EmergencyListener
from tezzeret.bus.emergency_client import EmergencyClient
from tezzeret.bus.envelope import Keyring, open_envelope, seal
from tezzeret.bus.errors import (
    BusClosed,
    BusError,
    BusUnavailable,
    EmergencyTimeout,
    EnvelopeRejected,
    OutboxFull,
    UnknownKey,
    UnknownTopic,
    WrongMessageType,
)
from tezzeret.bus.factory import make_bus
from tezzeret.bus.idempotency import SeenSet, idempotent
from tezzeret.bus.inprocess import InProcessBus
from tezzeret.bus.ratelimit import TokenBucket
from tezzeret.bus.redis_streams import RedisStreamsBus

__all__ = [
    "BreakerLike", "Bus", "BusClosed", "BusError", "BusUnavailable", "DeadLetter", "Delivery",
    "EmergencyCaller", "EmergencyClient", "EmergencyHandler", "EmergencyListener", "EmergencyTimeout",
    "EnvelopeRejected", "Handler", "InProcessBus", "Keyring", "OutboxFull", "RawDelivery",
    "RawHandler", "RedisStreamsBus", "SeenSet", "TokenBucket", "UnknownKey", "UnknownTopic",
    "WrongMessageType", "idempotent", "make_bus", "open_envelope", "seal", "topics",
]
