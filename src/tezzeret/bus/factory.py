"""Choosing the bus: Redis Streams when `redis_url` is set, the in-process bus otherwise.

Owns: that one decision (ARCHITECTURE decision 9) and handing the `bus` breaker to the Redis
backend. Must never start the bus (the caller owns its lifecycle).
"""

from __future__ import annotations

from typing import Any

from tezzeret.bus.base import BreakerLike, Bus
from tezzeret.bus.inprocess import InProcessBus
from tezzeret.bus.redis_streams import RedisStreamsBus
from tezzeret.config import Settings


def make_bus(settings: Settings, breakers: Any = None) -> Bus:
    """`breakers`: a mapping-like registry (`"bus" in breakers`, `breakers["bus"]`) or None."""
    if not settings.redis_url:
        return InProcessBus(settings)
    breaker: BreakerLike | None = None
    if breakers is not None and "bus" in breakers:
        breaker = breakers["bus"]
    return RedisStreamsBus(settings, breaker)
