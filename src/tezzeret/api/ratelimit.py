"""Per-client submission rate limits: one token bucket per identity.

Owns: deciding whether a client (a token's name, or `anonymous@<address>`) may submit now, and if
not, how many seconds until it may (`Retry-After`). Buckets refill at `api.rate_limit_per_min` and
hold at most `api.rate_limit_burst`; the least recently seen clients are forgotten beyond
`max_clients`, so memory stays bounded however many addresses an attacker uses (a forgotten
client starts again with a full bucket). Must never sleep or block: a refused client is told so.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class ClientRateLimiter:
    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.burst = float(burst)
        self._rate = per_minute / 60.0
        self._max_clients = max_clients
        self._clock = clock
        # identity -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def take(self, identity: str) -> float | None:
        """None when `identity` may go ahead (one token taken), else the seconds to wait."""
        if not self.enabled:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self._rate)
        wait = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[identity] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """The Retry-After header's whole seconds (never 0: "now" would invite a busy loop)."""
        return max(1, math.ceil(wait_s))
