"""The cache tiers in front of the compiler (ARCHITECTURE decision 8, upstream §4).

Owns: L1, the in-process result cache (a `resilience.ttl.TTLCache`: TTL and entry cap; the
in-flight half of L1, one compile per artifact id however many ask, is the forge's job registry);
the L2 probe (the store already holds this artifact id); the L3 environment that points Inductor's persistent FX-graph / AOTAutograd / autotune caches at the state
dir (and at Redis when `redis_url` is set), for the sandbox to hand to workers; and the per-tier hit
rates (`tezzeret_cache_hit_rate{tier}`, `tezzeret_cache_lookups_total{tier,result}`).

Must never compile, never write to the store, never import torch (L3 counters arrive as numbers
the worker read from Inductor), and never cache a failure: a failed compile is retried by the next
request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from tezzeret import metrics
from tezzeret.config import Settings
from tezzeret.leyline import pb
from tezzeret.resilience.clock import Clock, MonotonicClock
from tezzeret.resilience.ttl import TTLCache, TTLMemoryManager

log = logging.getLogger(__name__)

R = TypeVar("R")
Tier = Literal["L1", "L2", "L3"]

_MISSING: Any = object()

# Keys a worker uses in `WorkerResult.details` to report Inductor's cache counters.
L3_HITS_DETAIL = "inductor_cache_hits"
L3_MISSES_DETAIL = "inductor_cache_misses"
# torch's counter names: `torch._dynamo.utils.counters[group][name]` in torch 2.13.
_L3_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("inductor", "fxgraph_cache_hit", "fxgraph_cache_miss"),
    ("aot_autograd", "autograd_cache_hit", "autograd_cache_miss"),
)


@dataclass(frozen=True)
class CacheHit:
    """Served without compiling: `result` is what `remember` was given (tier L1) or what the L2
    probe returned (tier L2, e.g. the store's `ArtifactRecord`)."""

    artifact_id: str
    tier: Tier
    result: Any


@dataclass
class TierStats:
    hits: int = 0
    misses: int = 0
    joined: int = 0
    errors: int = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses + self.joined

    @property
    def hit_rate(self) -> float:
        served = self.hits + self.joined
        return served / self.lookups if self.lookups else 0.0


@dataclass(frozen=True)
class CacheStats:
    l1: TierStats
    l2: TierStats
    l3: TierStats
    entries: int

    def as_dict(self) -> dict[str, object]:
        return {
            tier: {"hits": s.hits, "misses": s.misses, "joined": s.joined, "errors": s.errors,
                   "hit_rate": s.hit_rate}
            for tier, s in (("L1", self.l1), ("L2", self.l2), ("L3", self.l3))
        } | {"entries": self.entries}


class CompileCache(Generic[R]):
    """L1 results, the L2 probe, and the hit-rate bookkeeping of every level.

    `l2` is a blocking function: artifact id → the value to serve when that artifact is already
    stored, else None (`store_l2(store)` gives the usual one). It runs in a worker thread.
    """

    def __init__(
        self,
        *,
        l2: Callable[[str], Any | None] | None,
        results: TTLCache[str, R],
        keep_results: bool = True,
    ) -> None:
        self._l2 = l2
        self._results = results
        self._keep_results = keep_results
        self._stats = {"L1": TierStats(), "L2": TierStats(), "L3": TierStats()}
        for tier in self._stats:
            metrics.CACHE_HIT_RATE.labels(tier=tier).set(0.0)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        l2: Callable[[str], Any | None] | None,
        memory: TTLMemoryManager | None = None,
        clock: Clock | None = None,
    ) -> CompileCache[R]:
        """TTL `memory_management.cache_ttl_seconds`, cap `cache.l1_max_entries`; registered with
        `memory` (as `compilation_cache`) when given, so its sweeps and conservative budget apply.
        `compilation.enable_caching: false` keeps no results (in-flight dedup stays on: it is what
        stops duplicate compiles)."""
        if memory is not None:
            results: TTLCache[str, R] = memory.create(
                "compilation_cache", max_entries=settings.cache.l1_max_entries
            )
        else:
            results = TTLCache(
                "compilation_cache",
                ttl_s=settings.memory_management.cache_ttl_seconds,
                max_entries=settings.cache.l1_max_entries,
                clock=clock or MonotonicClock(),
            )
        return cls(l2=l2, results=results, keep_results=settings.compilation.enable_caching)

    # ---- the lookup path -------------------------------------------------------------------

    def joined(self) -> None:
        """Count a request that joined a compile already in flight (an L1 hit of its own kind)."""
        self._count("L1", "joined")

    async def lookup(self, artifact_id: str) -> CacheHit | None:
        """L1 result → L2 store probe; None when the artifact must be compiled."""
        if not artifact_id:
            raise ValueError("lookup needs an artifact id")
        cached = self._results.get(artifact_id, _MISSING) if self._keep_results else _MISSING
        if cached is not _MISSING:
            self._count("L1", "hit")
            return CacheHit(artifact_id, "L1", cached)
        self._count("L1", "miss")
        if self._l2 is None:
            return None
        try:
            found = await asyncio.to_thread(self._l2, artifact_id)
        except Exception:
            # The store being unavailable must not stop compilation: treat it as a miss; putting
            # the artifact later is idempotent if it did exist.
            log.warning("L2 lookup of %s failed; treating it as a miss", artifact_id, exc_info=True)
            self._count("L2", "error")
            return None
        if found is None:
            self._count("L2", "miss")
            return None
        self._count("L2", "hit")
        return CacheHit(artifact_id, "L2", found)

    def holds(self, artifact_id: str) -> bool:
        """Whether L1 holds a result for `artifact_id` (a probe: counts no lookup)."""
        return self._keep_results and artifact_id in self._results

    def remember(self, artifact_id: str, result: R) -> None:
        """The compile of `artifact_id` succeeded: serve `result` from L1 until it expires."""
        if self._keep_results:
            self._results.put(artifact_id, result)

    def invalidate(self, artifact_id: str) -> None:
        """Forget a cached result (e.g. the artifact was quarantined)."""
        self._results.pop(artifact_id)

    # ---- L3 ----------------------------------------------------------------------------------

    def record_l3(self, hits: int, misses: int) -> None:
        """Add Inductor's persistent-cache hits and misses one worker reported for one job."""
        if hits < 0 or misses < 0:
            raise ValueError(f"L3 counts cannot be negative (hits={hits}, misses={misses})")
        if hits:
            self._count("L3", "hit", hits)
        if misses:
            self._count("L3", "miss", misses)

    def record_l3_details(self, details: Iterable[pb.KeyValue]) -> tuple[int, int]:
        """`record_l3` from a `WorkerResult.details` list (keys `L3_HITS_DETAIL`, `L3_MISSES_DETAIL`)."""
        values = {kv.key: kv.value for kv in details}
        hits = int(values.get(L3_HITS_DETAIL, "0") or 0)
        misses = int(values.get(L3_MISSES_DETAIL, "0") or 0)
        self.record_l3(hits, misses)
        return hits, misses

    # ---- bookkeeping -------------------------------------------------------------------------

    def _count(self, tier: Tier, result: Literal["hit", "miss", "joined", "error"], n: int = 1) -> None:
        stats = self._stats[tier]
        if result == "hit":
            stats.hits += n
        elif result == "miss":
            stats.misses += n
        elif result == "joined":
            stats.joined += n
        else:
            stats.errors += n
        metrics.CACHE_LOOKUPS.labels(tier=tier, result=result).inc(n)
        metrics.CACHE_HIT_RATE.labels(tier=tier).set(stats.hit_rate)

    def stats(self) -> CacheStats:
        copy = {t: TierStats(s.hits, s.misses, s.joined, s.errors) for t, s in self._stats.items()}
        return CacheStats(copy["L1"], copy["L2"], copy["L3"], len(self._results))


def store_l2(store: Any) -> Callable[[str], Any | None]:
    """The L2 probe over a `tezzeret.store.Store`: the stored `ArtifactRecord`, or None."""
    find: Callable[[str], Any | None] = store.find_artifact
    return find


def l3_counts(counters: Mapping[str, Mapping[str, int]]) -> tuple[int, int]:
    """(hits, misses) of Inductor's persistent caches from `torch._dynamo.utils.counters`, for the
    worker to report after a compile (FX-graph cache and AOTAutograd cache together)."""
    hits = misses = 0
    for group, hit_key, miss_key in _L3_COUNTERS:
        section = counters.get(group, {})
        hits += int(section.get(hit_key, 0))
        misses += int(section.get(miss_key, 0))
    return hits, misses


def l3_redis_url(settings: Settings) -> str | None:
    """The Redis of the shared L3 (`cache.l3_redis_url`, else `redis_url`), or None when the
    remote caches are off (`cache.remote_inductor_cache`, `compilation.enable_caching`)."""
    if not (settings.cache.remote_inductor_cache and settings.compilation.enable_caching):
        return None
    return settings.cache.l3_redis_url or settings.redis_url


def l3_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that give a compile worker the shared L3 caches.

    Always: `TORCHINDUCTOR_CACHE_DIR` = `settings.inductor_cache_dir` (the sandbox must mount it
    writable) with the local FX-graph and AOTAutograd caches switched on (the precompile path needs
    them). With an L3 Redis (`l3_redis_url`, none when `compilation.enable_caching` is false): Inductor's remote FX-graph, AOTAutograd and autotune caches on that Redis (names checked in
    torch 2.13: `_inductor/config.py`, `_functorch/config.py`, `_inductor/remote_cache.py`,
    `_inductor/runtime/cache_dir_utils.py`). A
    worker in its own network namespace cannot reach Redis: the sandbox pool replaces the URL with
    its relay's socket (`sandbox.l3relay`).
    """
    url = l3_redis_url(settings)
    # Always on, whatever `compilation.enable_caching` says: torch 2.13's AOT precompile serializes
    # an entry through its AOTAutograd cache entry, and with that cache off every FAST-or-better
    # compile fails ("'NoneType' object is not callable" in serialize_compile_artifacts).
    env = {
        "TORCHINDUCTOR_CACHE_DIR": str(settings.inductor_cache_dir),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }
    if url:
        env |= {
            "TORCHINDUCTOR_REDIS_URL": url,
            "TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1",
            "TORCHINDUCTOR_AUTOGRAD_REMOTE_CACHE": "1",
            "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE": "1",
        }
    return env
