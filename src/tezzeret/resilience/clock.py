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
    """A clock that stands still until `advance` (or, with `autoadvance`, `sleep`) moves it.

    With `autoadvance=True` (the default), `sleep(s)` moves the clock forward by `s` and yields to
    the event loop once, so one periodic task (`TTLMemoryManager.run`, `ResourceMonitor.run`) runs
    one simulated period per loop turn. That is right for one sleeping task at a time; two would
    add their sleeps together. For several tasks, use `autoadvance=False`: `sleep` then waits until
    a driver's `advance` moves time past its deadline, and sleepers wake in deadline order.
    """

    def __init__(self, start: float = 1_000.0, *, autoadvance: bool = True) -> None:
        self._now = float(start)
        self.autoadvance = autoadvance
        # Monitor sampling runs in a worker thread; keep reads and moves consistent across threads.
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (never backward), wake due sleepers, return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}; monotonic time never goes back")
        with self._lock:
            self._now += seconds
            now = self._now
            due = [s for s in self._sleepers if s[0] <= now]
            self._sleepers = [s for s in self._sleepers if s[0] > now]
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for _, _, loop, fut in sorted(due, key=lambda s: (s[0], s[1])):
            if loop is current:
                _wake(fut)
            else:
                loop.call_soon_threadsafe(_wake, fut)
        return now

    @property
    def sleepers(self) -> int:
        """How many tasks wait in `sleep` (with `autoadvance=False`)."""
        with self._lock:
            return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        if self.autoadvance or seconds <= 0:
            self.advance(max(0.0, seconds))
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._seq += 1
            self._sleepers.append((self._now + seconds, self._seq, loop, fut))
        try:
            await fut
        finally:
            with self._lock:
                self._sleepers = [s for s in self._sleepers if s[3] is not fut]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
