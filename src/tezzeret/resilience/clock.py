"""Injectable clocks for everything in resilience that measures time.

Owns: the `Clock` protocol (monotonic seconds + an awaitable sleep), the real `MonotonicClock`, and
`ManualClock`, whose time moves only when told, so tests and simulations can cover hours of
breaker timeouts, quiet periods and TTLs in milliseconds of wall time and give the same answer on
every run. It must never read the wall clock (`time.time`): budgets and expiries use monotonic time
so a clock step (NTP, suspend) cannot open or close a breaker or expire a cache.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source, in seconds, with a matching sleep."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The process's monotonic clock and asyncio's sleep: the one to use in the service."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that stands still until `advance` (or `sleep`) moves it.

    `sleep` advances the clock by the requested amount and yields to the event loop once, so a
    periodic task (`TTLMemoryManager.run`, `ResourceMonitor.run`) runs one simulated period per
    loop turn instead of waiting in real time.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = float(start)
        # Monitor sampling runs in a worker thread; keep reads and moves consistent across threads.
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}; monotonic time never goes back")
        with self._lock:
            self._now += seconds
            return self._now

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
