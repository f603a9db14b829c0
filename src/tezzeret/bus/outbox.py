"""A bounded, ordered buffer of outgoing events while Redis is away, flushed when it returns.

Owns: holding events the forge published while the `bus` breaker is OPEN or Redis refuses, in
publish order, up to `bus.outbox_limit`; a background flusher that sends them oldest first as soon
as the breaker lets a probe through. Must never drop an event silently (a full outbox raises
`OutboxFull` at the publisher) and never reorder events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tezzeret.bus.base import BreakerLike
from tezzeret.bus.errors import OutboxFull
from tezzeret.metrics import BUS_EVENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxItem:
    topic: str
    data: bytes


Send = Callable[[OutboxItem], Awaitable[object]]


class Outbox:
    """Publish order is kept: once anything is buffered, later events queue behind it."""

    def __init__(
        self,
        limit: int,
        send: Send,
        *,
        breaker: BreakerLike | None = None,
        transient: tuple[type[BaseException], ...] = (ConnectionError, OSError, TimeoutError),
        min_backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
    ) -> None:
        self._limit = limit
        self._send = send
        self._breaker = breaker
        self._transient = transient
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._items: deque[OutboxItem] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.flushed_total = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def limit(self) -> int:
        return self._limit

    async def publish(self, item: OutboxItem) -> bool:
        """Send now if nothing is buffered and the breaker allows; else buffer. True if sent now."""
        if not self._items and (self._breaker is None or self._breaker.allow()):
            try:
                await self._send(item)
            except self._transient as exc:
                self._failed(exc)
            else:
                if self._breaker is not None:
                    self._breaker.record_success()
                return True
        self.put(item)
        return False

    def put(self, item: OutboxItem) -> None:
        if len(self._items) >= self._limit:
            BUS_EVENTS.labels(item.topic, "outbox_full").inc()
            raise OutboxFull(self._limit, item.topic)
        self._items.append(item)
        self._drained.clear()
        self._wake.set()
        BUS_EVENTS.labels(item.topic, "buffered").inc()

    async def drained(self) -> None:
        """Wait until everything buffered so far has been sent."""
        await self._drained.wait()

    async def run(self) -> None:
        """The flusher: runs until cancelled."""
        backoff = self._min_backoff
        while True:
            if not self._items:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._breaker is not None and not self._breaker.allow():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            item = self._items[0]
            try:
                await self._send(item)
            except self._transient as exc:
                self._failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._breaker is not None:
                self._breaker.record_success()
            self._items.popleft()
            self.flushed_total += 1
            BUS_EVENTS.labels(item.topic, "flushed").inc()
            backoff = self._min_backoff

    def _failed(self, exc: BaseException) -> None:
        reason = f"redis unreachable: {type(exc).__name__}: {exc}"
        log.warning("bus: %s", reason)
        if self._breaker is not None:
            self._breaker.record_failure(reason)
