"""A seen-id set with a TTL, for consumers of an at-least-once bus.

Owns: remembering which message ids (request ids, artifact ids, nonces) were already handled, for
`ttl_s`, bounded to `max_entries` (oldest forgotten first), with an injectable monotonic clock; and
`idempotent()`, which wraps a bus handler so a redelivered or duplicated message runs once. Must
never mark an id done before its handler succeeded (a failure must stay redeliverable).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tezzeret.bus.base import Delivery, Handler


class SeenSet:
    def __init__(self, ttl_s: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, object]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        self._expire()
        return key in self._seen

    def add(self, key: str, value: object = None) -> None:
        """Remember `key` (with an optional `value`, e.g. the reply already sent) for the TTL."""
        self._seen[key] = (self._clock() + self._ttl, value)
        self._seen.move_to_end(key)
        self._expire()
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def get(self, key: str) -> object:
        """The value remembered with `key`, or None if unseen or expired."""
        self._expire()
        entry = self._seen.get(key)
        return None if entry is None else entry[1]

    def check_and_add(self, key: str) -> bool:
        """True if `key` is new (and now remembered); False if it was seen within the TTL."""
        if key in self:
            return False
        self.add(key)
        return True

    def _expire(self) -> None:
        now = self._clock()
        # Entries are in insertion order and share one TTL, so expiries are ordered too.
        while self._seen:
            key, (expires, _) = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[key]


def idempotent(handler: Handler, seen: SeenSet, key: Callable[[Delivery], str] = lambda d: d.message_id) -> Handler:
    """Run `handler` once per `key(delivery)`; later copies are ACKed without running it."""

    async def run(delivery: Delivery) -> None:
        k = key(delivery)
        if k in seen:
            return
        await handler(delivery)
        seen.add(k)

    return run
