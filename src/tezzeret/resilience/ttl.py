"""Bounded in-memory caches with time-to-live, and the manager that sweeps them.

Owns: `TTLCache` (entries expire `ttl_s` after they were last written; entry and byte caps; lazy
expiry on read; expiry and eviction on insert past a cap) and `TTLMemoryManager` (the registry of
caches, the periodic sweep every `memory_management.cleanup_interval_seconds`, the conservative
cache budget, and the memory metrics). It must never hold anything without a bound: every cache
has a TTL and an entry cap. It must never evict from Urza or disk; it frees process memory only.

Why not `cachetools.TTLCache`: it is not installed here, reads its timer as a zero-argument
callable (fine) but evicts by LRU with no byte budget, exports nothing, and cannot shrink its cap
in place for conservative mode. An `OrderedDict` kept in write order gives O(1) amortised expiry
and eviction (the oldest write is always at the front, because every entry of one cache shares one
TTL), which is all this needs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import psutil

from tezzeret import metrics
from tezzeret.config import Settings
from tezzeret.resilience.clock import Clock
from tezzeret.resilience.errors import ResilienceConfigError

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()

# The standard cache types of upstream §4 and where their TTL lives in `memory_management`.
STANDARD_CACHE_TTL_KEYS: dict[str, str] = {
    "compilation_cache": "cache_ttl_seconds",
    "jobs": "job_ttl_seconds",
    "artifacts": "artifact_ttl_seconds",
}


class TTLCache(Generic[K, V]):
    """A dict with a TTL per entry and caps on entries (and optionally bytes).

    A `put` of an existing key rewrites it and restarts its TTL. When a put takes the cache past a
    cap, expired entries go first, then the oldest writes, until it fits.
    """

    def __init__(
        self,
        cache_type: str,
        *,
        ttl_s: float,
        max_entries: int,
        max_bytes: int | None = None,
        sizeof: Callable[[V], int] | None = None,
        clock: Clock,
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ResilienceConfigError(
                f"TTLCache[{cache_type}]", f"ttl_s must be > 0 and max_entries >= 1 (got {ttl_s}, {max_entries})"
            )
        if max_bytes is not None and sizeof is None:
            raise ResilienceConfigError(
                f"TTLCache[{cache_type}]", "max_bytes needs sizeof, the function that measures a value's bytes"
            )
        self.cache_type = cache_type
        self.ttl_s = float(ttl_s)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._base_max_entries = max_entries
        self._base_max_bytes = max_bytes
        self._sizeof = sizeof
        self._clock = clock
        # key -> (written_at, value, size); insertion order == write order.
        self._data: OrderedDict[K, tuple[float, V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.expired_total = 0
        self.evicted_total = 0
        self._cleanup_metric = metrics.MEMORY_TTL_CLEANUP.labels(cache_type=cache_type)
        self._entries_metric = metrics.MEMORY_CACHE_ENTRIES.labels(cache_type=cache_type)
        self._entries_metric.set(0)

    # -- caps ------------------------------------------------------------------------------
    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    @property
    def bytes(self) -> int:
        return self._bytes

    def set_budget_factor(self, factor: float) -> int:
        """Scale the caps to `factor` of their configured size (conservative mode halves them);
        evicts down to the new caps at once and returns how many entries went."""
        if not 0 < factor <= 1:
            raise ResilienceConfigError(f"TTLCache[{self.cache_type}]", f"budget factor must be in (0, 1], got {factor}")
        with self._lock:
            self._max_entries = max(1, int(self._base_max_entries * factor))
            if self._base_max_bytes is not None:
                self._max_bytes = max(1, int(self._base_max_bytes * factor))
            removed = self._expire_locked(self._clock.monotonic()) + self._evict_to_caps_locked()
        self._after_removal(removed)
        return removed

    # -- mapping ---------------------------------------------------------------------------
    def put(self, key: K, value: V) -> None:
        size = self._sizeof(value) if self._sizeof is not None else 0
        with self._lock:
            now = self._clock.monotonic()
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._data[key] = (now, value, size)
            self._bytes += size
            removed = 0
            if self._over_caps():
                removed = self._expire_locked(now) + self._evict_to_caps_locked()
        self._after_removal(removed)

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return default
            if self._clock.monotonic() - item[0] >= self.ttl_s:
                self._remove_locked(key)
                self.expired_total += 1
                expired = 1
            else:
                return item[1]
        self._after_removal(expired)
        return default

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return default
            self._remove_locked(key)
            live = self._clock.monotonic() - item[0] < self.ttl_s
        self._entries_metric.set(len(self._data))
        return item[1] if live else default

    def contains(self, key: K) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]  # the sentinel stands in for V: returned only when absent

    def __contains__(self, key: object) -> bool:
        return self.contains(key)  # type: ignore[arg-type]  # `in` passes object; a key of another type is simply absent

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> Iterator[K]:
        """A snapshot of the live keys, oldest write first."""
        now = self._clock.monotonic()
        with self._lock:
            return iter([k for k, (t, _, _) in self._data.items() if now - t < self.ttl_s])

    def clear(self) -> int:
        with self._lock:
            n = len(self._data)
            self._data.clear()
            self._bytes = 0
        self._after_removal(0)
        return n

    def expire(self, max_items: int | None = None) -> int:
        """Drop expired entries (at most `max_items`) and return how many went."""
        with self._lock:
            removed = self._expire_locked(self._clock.monotonic(), max_items)
        self._after_removal(removed)
        return removed

    # -- internals -------------------------------------------------------------------------
    def _over_caps(self) -> bool:
        return len(self._data) > self._max_entries or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        )

    def _expire_locked(self, now: float, max_items: int | None = None) -> int:
        removed = 0
        data = self._data
        while data and (max_items is None or removed < max_items):
            key, (written, _, size) = next(iter(data.items()))
            if now - written < self.ttl_s:
                break
            del data[key]
            self._bytes -= size
            removed += 1
        self.expired_total += removed
        return removed

    def _evict_to_caps_locked(self) -> int:
        removed = 0
        while self._data and self._over_caps():
            _, (_, _, size) = self._data.popitem(last=False)
            self._bytes -= size
            removed += 1
        self.evicted_total += removed
        return removed

    def _remove_locked(self, key: K) -> None:
        _, _, size = self._data.pop(key)
        self._bytes -= size

    def _after_removal(self, removed: int) -> None:
        if removed:
            self._cleanup_metric.inc(removed)
        self._entries_metric.set(len(self._data))


class TTLMemoryManager:
    """Tezzeret's caches with TTLs, swept on a timer (`memory_management.*`)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._mm = settings.memory_management
        self._clock = clock
        self._caches: dict[str, TTLCache[Any, Any]] = {}
        self._process = psutil.Process()
        self.budget_factor = 1.0

    def register(self, cache: TTLCache[K, V]) -> TTLCache[K, V]:
        if cache.cache_type in self._caches:
            raise ResilienceConfigError(
                "TTLMemoryManager.register", f"a cache of type '{cache.cache_type}' is already registered"
            )
        self._caches[cache.cache_type] = cache
        if self.budget_factor != 1.0:
            cache.set_budget_factor(self.budget_factor)
        return cache

    def create(
        self,
        cache_type: str,
        *,
        ttl_s: float | None = None,
        max_entries: int | None = None,
        sizeof: Callable[[V], int] | None = None,
    ) -> TTLCache[K, V]:
        """Build and register a cache with the configured TTL and caps for `cache_type`.

        The standard types (`compilation_cache`, `jobs`, `artifacts`) take their TTL from
        `memory_management`; others must pass `ttl_s`. With `sizeof`, the cache is also capped at
        `max_cache_size_mb`.
        """
        if ttl_s is None:
            key = STANDARD_CACHE_TTL_KEYS.get(cache_type)
            if key is None:
                raise ResilienceConfigError(
                    f"TTLMemoryManager.create({cache_type!r})",
                    f"not a standard cache type ({', '.join(STANDARD_CACHE_TTL_KEYS)}); pass ttl_s",
                )
            ttl_s = float(getattr(self._mm, key))
        cache: TTLCache[K, V] = TTLCache(
            cache_type,
            ttl_s=ttl_s,
            max_entries=max_entries or self._mm.max_entries_per_cache,
            max_bytes=int(self._mm.max_cache_size_mb * 2**20) if sizeof is not None else None,
            sizeof=sizeof,
            clock=self._clock,
        )
        return self.register(cache)

    def __getitem__(self, cache_type: str) -> TTLCache[object, object]:
        return self._caches[cache_type]

    @property
    def caches(self) -> dict[str, TTLCache[object, object]]:
        return dict(self._caches)

    def apply_budget_factor(self, factor: float) -> dict[str, int]:
        """Scale every cache's caps (conservative mode's `cache_budget_factor`, 1.0 to restore)."""
        self.budget_factor = factor
        return {t: c.set_budget_factor(factor) for t, c in self._caches.items()}

    def sweep(self) -> dict[str, int]:
        """Expire every cache now; returns entries removed per cache type."""
        start = time.perf_counter()
        removed = {t: c.expire() for t, c in self._caches.items()}
        self._finish(start, removed)
        return removed

    async def sweep_async(self, chunk: int = 1000) -> dict[str, int]:
        """`sweep` in chunks, yielding to the event loop between them."""
        start = time.perf_counter()
        removed: dict[str, int] = {}
        for t, c in self._caches.items():
            total = 0
            while True:
                n = c.expire(chunk)
                total += n
                if n < chunk:
                    break
                await asyncio.sleep(0)
            removed[t] = total
        self._finish(start, removed)
        return removed

    def stats(self) -> dict[str, dict[str, int | float | None]]:
        return {
            t: {
                "entries": len(c),
                "bytes": c.bytes,
                "max_entries": c.max_entries,
                "max_bytes": c.max_bytes,
                "ttl_s": c.ttl_s,
                "expired_total": c.expired_total,
                "evicted_total": c.evicted_total,
            }
            for t, c in self._caches.items()
        }

    async def run(self) -> None:
        """Sweep every `cleanup_interval_seconds` until cancelled (no-op when disabled)."""
        while True:
            await self._clock.sleep(self._mm.cleanup_interval_seconds)
            if not self._mm.ttl_cleanup_enabled:
                continue
            try:
                await self.sweep_async()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass must not end cleanup for good
                log.exception("TTL sweep failed; next pass in %.0f s", self._mm.cleanup_interval_seconds)

    def _finish(self, start: float, removed: dict[str, int]) -> None:
        metrics.MEMORY_GC_DURATION_MS.observe((time.perf_counter() - start) * 1000.0)
        metrics.MEMORY_USAGE_GB.set(self._process.memory_info().rss / 2**30)
        total = sum(removed.values())
        if total:
            log.info("TTL sweep removed %d entries: %s", total, removed)
