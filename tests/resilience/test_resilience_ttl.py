"""TTL caches and the memory manager over simulated time, including the million-entry soak."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import psutil
import pytest
from resilience_helpers import metric
from settings import settings_for

from tezzeret.resilience import ManualClock, ResilienceConfigError, TTLCache, TTLMemoryManager


def cache(clock: ManualClock, name: str = "t_cache", **kw: object) -> TTLCache[str, bytes]:
    args: dict[str, object] = {"ttl_s": 60.0, "max_entries": 100}
    args.update(kw)
    return TTLCache(name, clock=clock, **args)  # type: ignore[arg-type]


def test_get_put_pop_contains(clock: ManualClock) -> None:
    c = cache(clock)
    c.put("a", b"1")
    assert c.get("a") == b"1"
    assert "a" in c and c.contains("a")
    assert c.get("missing", b"dflt") == b"dflt"
    assert c.pop("a") == b"1"
    assert "a" not in c and len(c) == 0
    assert c.pop("a") is None


def test_entries_expire_lazily_on_read(clock: ManualClock) -> None:
    c = cache(clock, name="t_lazy")
    before = metric("tezzeret_memory_ttl_cleanup_total", cache_type="t_lazy")
    c.put("a", b"1")
    clock.advance(59.9)
    assert c.get("a") == b"1"
    clock.advance(0.1)
    assert len(c) == 1  # nothing has looked yet
    assert c.get("a") is None
    assert len(c) == 0
    assert metric("tezzeret_memory_ttl_cleanup_total", cache_type="t_lazy") == before + 1
    assert metric("tezzeret_memory_cache_entries", cache_type="t_lazy") == 0


def test_rewrite_restarts_the_ttl(clock: ManualClock) -> None:
    c = cache(clock)
    c.put("a", b"1")
    c.put("b", b"2")
    clock.advance(50)
    c.put("a", b"1'")
    clock.advance(20)
    assert c.get("b") is None
    assert c.get("a") == b"1'"


def test_entry_cap_evicts_oldest_write_first(clock: ManualClock) -> None:
    c = cache(clock, max_entries=3)
    for k in "abcd":
        c.put(k, k.encode())
        clock.advance(1)
    assert len(c) == 3
    assert list(c.keys()) == ["b", "c", "d"]
    assert c.evicted_total == 1


def test_insert_past_cap_drops_expired_before_live(clock: ManualClock) -> None:
    c = cache(clock, max_entries=3)
    c.put("old1", b"x")
    c.put("old2", b"x")
    clock.advance(61)
    c.put("new1", b"x")
    c.put("new2", b"x")  # past the cap: both expired entries go, no live one is evicted
    assert sorted(c.keys()) == ["new1", "new2"]
    assert (c.expired_total, c.evicted_total) == (2, 0)


def test_byte_cap(clock: ManualClock) -> None:
    c = cache(clock, max_entries=1000, max_bytes=1000, sizeof=len)
    for i in range(10):
        c.put(f"k{i}", b"x" * 300)
    assert c.bytes <= 1000 and len(c) == 3
    c.put("k9", b"y")  # rewrite shrinks the total
    assert c.bytes == 601
    with pytest.raises(ResilienceConfigError):
        cache(clock, max_bytes=10)


def test_budget_factor_halves_and_restores_caps(clock: ManualClock) -> None:
    c = cache(clock, max_entries=100)
    for i in range(100):
        c.put(str(i), b"x")
    assert c.set_budget_factor(0.5) == 50
    assert len(c) == 50 and c.max_entries == 50
    c.set_budget_factor(1.0)
    assert c.max_entries == 100


def test_manager_standard_caches_take_ttls_from_settings(tmp_path: Path, clock: ManualClock) -> None:
    s = settings_for(tmp_path, memory_management={"max_entries_per_cache": 500, "max_cache_size_mb": 1})
    mgr = TTLMemoryManager(s, clock)
    comp: TTLCache[str, bytes] = mgr.create("compilation_cache", sizeof=len)
    jobs: TTLCache[str, object] = mgr.create("jobs")
    arts: TTLCache[str, bytes] = mgr.create("artifacts")
    assert (comp.ttl_s, jobs.ttl_s, arts.ttl_s) == (1800.0, 3600.0, 86400.0)
    assert comp.max_entries == 500 and comp.max_bytes == 2**20 and jobs.max_bytes is None
    with pytest.raises(ResilienceConfigError):
        mgr.create("jobs")
    with pytest.raises(ResilienceConfigError):
        mgr.create("queues")
    queue: TTLCache[str, int] = mgr.create("queues", ttl_s=10)
    assert queue.ttl_s == 10
    for i in range(10):
        comp.put(f"c{i}", b"x")
        jobs.put(f"j{i}", object())
        arts.put(f"a{i}", b"x")
    clock.advance(1800)
    assert mgr.sweep() == {"compilation_cache": 10, "jobs": 0, "artifacts": 0, "queues": 0}
    clock.advance(1800)
    assert mgr.sweep()["jobs"] == 10
    assert mgr.stats()["artifacts"]["entries"] == 10
    assert metric("tezzeret_memory_usage_gb") > 0
    assert mgr.apply_budget_factor(0.5) == {"compilation_cache": 0, "jobs": 0, "artifacts": 0, "queues": 0}
    assert arts.max_entries == 250


async def test_manager_run_sweeps_every_interval(tmp_path: Path, clock: ManualClock) -> None:
    s = settings_for(tmp_path, memory_management={"cleanup_interval_seconds": 300})
    mgr = TTLMemoryManager(s, clock)
    c: TTLCache[int, int] = mgr.create("compilation_cache")
    for i in range(3000):
        c.put(i, i)
    start = clock.monotonic()
    task = asyncio.create_task(mgr.run())
    # ManualClock.sleep advances time: the sweeper runs one 300 s period per loop turn.
    while len(c) and clock.monotonic() - start < 10_000:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(c) == 0
    # Expired by the first sweep at or past the 1800 s TTL (the sweeper may already be in its
    # next simulated sleep when this coroutine looks).
    assert 1800 <= clock.monotonic() - start <= 2100


def test_soak_a_million_entries_over_simulated_hours_stays_bounded(tmp_path: Path) -> None:
    """1,000,000 writes over ~28 simulated hours: entries never pass the cap and RSS stays flat.

    Without TTLs and caps the same writes hold a million entries (measured: ~170 MB of RSS per
    500k on this machine); bounded, the caches hold at most `cap` entries each.
    """
    clock = ManualClock()
    cap = 20_000
    s = settings_for(
        tmp_path,
        memory_management={"max_entries_per_cache": cap, "cleanup_interval_seconds": 300},
    )
    mgr = TTLMemoryManager(s, clock)
    comp: TTLCache[str, bytes] = mgr.create("compilation_cache")
    jobs: TTLCache[str, bytes] = mgr.create("jobs")
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    peak_entries = 0
    next_sweep = clock.monotonic() + 300
    total = 1_000_000
    payload = bytes(64)
    for i in range(total):
        clock.advance(0.1)
        key = f"bp-{i:08x}"
        (comp if i % 2 else jobs).put(key, payload + key.encode())
        if i % 7 == 0:
            comp.get(f"bp-{i - 1001:08x}")  # lookups of recent and expired keys
        if clock.monotonic() >= next_sweep:
            mgr.sweep()
            next_sweep += 300
            peak_entries = max(peak_entries, len(comp), len(jobs))
    gc.collect()
    growth_mb = (proc.memory_info().rss - rss0) / 2**20
    assert peak_entries <= cap
    assert len(comp) <= cap and len(jobs) <= cap
    # 5 writes/s per cache, 1800 s TTL, swept every 300 s: at most (1800 + 300) * 5 entries.
    assert len(comp) <= 10_500
    stats = mgr.stats()
    assert stats["compilation_cache"]["expired_total"] + stats["compilation_cache"]["evicted_total"] == total // 2 - len(comp)
    # Two caches of at most 20k small entries each: a few tens of MB at the very most.
    assert growth_mb < 64, f"RSS grew {growth_mb:.1f} MB"
