"""The cache tiers: L1 results, the L2 store probe, L3 environment and counts (in-flight dedup is\nthe forge's: tests/forge/test_forge_inflight.py)."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from settings import settings_for

from tezzeret import metrics
from tezzeret.cache import (
    L3_HITS_DETAIL,
    L3_MISSES_DETAIL,
    CacheHit,
    CompileCache,
    l3_counts,
    l3_environment,
    store_l2,
)
from tezzeret.leyline import codec, pb
from tezzeret.resilience.clock import ManualClock
from tezzeret.resilience.ttl import TTLMemoryManager
from tezzeret.store import Store

AID = "0123456789abcdef-cpu-x86_64-avx2-fast-tc000001"


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store")
    yield s
    s.close()


def _cache(tmp_path: Path, store: Store | None = None, clock: ManualClock | None = None, **overrides: Any) -> CompileCache[Any]:
    settings = settings_for(tmp_path / "state", **overrides)
    return CompileCache.from_settings(settings, l2=store_l2(store) if store else None, clock=clock)


async def test_l1_serves_a_remembered_result_and_counts_it(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    result = pb.CompilationResult(artifact_id=AID, success=True)
    assert await cache.lookup(AID) is None
    cache.remember(AID, result)
    for _ in range(3):
        hit = await cache.lookup(AID)
        assert isinstance(hit, CacheHit) and hit.tier == "L1" and hit.result is result
    cache.joined()
    stats = cache.stats()
    assert (stats.l1.misses, stats.l1.hits, stats.l1.joined) == (1, 3, 1)
    assert stats.entries == 1
    assert _sample("tezzeret_cache_hit_rate", tier="L1") == pytest.approx(cache.stats().l1.hit_rate)
    assert cache.stats().l1.hit_rate == pytest.approx(4 / 5)


async def test_l2_hit_serves_the_stored_artifact(tmp_path: Path, store: Store) -> None:
    ir = pb.BlueprintIR(schema_version=1)
    ir.metadata.name = "stored"
    digest = hashlib.sha256(b"stored").hexdigest()
    store.put_blueprint(codec.encode(ir), digest, source="test")
    manifest = pb.CompiledKernelArtifact(schema_version=1, artifact_id=AID, blueprint_digest=digest,
                                         strategy=pb.STRATEGY_FAST, target="cpu", toolchain_hash="tc")
    f = tmp_path / "a.tzart"
    f.write_bytes(b"payload")
    sig = pb.ArtifactSignature(schema_version=1, key_id="0" * 16, algorithm="ed25519", signature=b"s" * 64)
    store.put_artifact(manifest, f, sig)
    cache = _cache(tmp_path, store)
    first = await cache.lookup(AID)
    assert isinstance(first, CacheHit) and first.tier == "L2"
    assert first.result.artifact_id == AID and first.result.file_sha256 == hashlib.sha256(b"payload").hexdigest()
    assert cache.stats().l2.hit_rate == 1.0
    assert _sample("tezzeret_cache_hit_rate", tier="L2") == 1.0
    assert await cache.lookup("another-id") is None


async def test_results_expire_after_their_ttl(tmp_path: Path) -> None:
    clock = ManualClock()
    cache = _cache(tmp_path, clock=clock, memory_management={"cache_ttl_seconds": 60})
    assert await cache.lookup(AID) is None
    cache.remember(AID, "done")
    clock.advance(59)
    assert isinstance(await cache.lookup(AID), CacheHit)
    clock.advance(2)
    assert await cache.lookup(AID) is None


async def test_store_errors_count_as_misses(tmp_path: Path) -> None:
    def broken_l2(artifact_id: str) -> None:
        raise OSError("disk I/O error")

    settings = settings_for(tmp_path / "state")
    cache: CompileCache[Any] = CompileCache.from_settings(settings, l2=broken_l2)
    assert await cache.lookup(AID) is None
    assert cache.stats().l2.errors == 1


async def test_caching_off_keeps_no_results(tmp_path: Path) -> None:
    cache = _cache(tmp_path, compilation={"enable_caching": False})
    cache.remember(AID, "r")
    assert await cache.lookup(AID) is None


def test_registered_with_the_memory_manager(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", cache={"l1_max_entries": 3})
    memory = TTLMemoryManager(settings, ManualClock())
    cache: CompileCache[Any] = CompileCache.from_settings(settings, l2=None, memory=memory)
    results = memory["compilation_cache"]
    assert results.max_entries == 3
    for i in range(5):
        cache.remember(f"id-{i}", i)
    assert len(results) == 3 and cache.stats().entries == 3


def test_l3_counts_and_rate(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    counters = {"inductor": {"fxgraph_cache_hit": 3, "fxgraph_cache_miss": 1, "other": 9},
                "aot_autograd": {"autograd_cache_hit": 1, "autograd_cache_miss": 1}}
    hits, misses = l3_counts(counters)
    assert (hits, misses) == (4, 2)
    before = _sample("tezzeret_cache_lookups_total", tier="L3", result="hit")
    cache.record_l3(hits, misses)
    details = [pb.KeyValue(key=L3_HITS_DETAIL, value="2"), pb.KeyValue(key=L3_MISSES_DETAIL, value="0"),
               pb.KeyValue(key="unrelated", value="x")]
    assert cache.record_l3_details(details) == (2, 0)
    assert _sample("tezzeret_cache_lookups_total", tier="L3", result="hit") - before == 6
    assert cache.stats().l3.hit_rate == pytest.approx(6 / 8)
    assert _sample("tezzeret_cache_hit_rate", tier="L3") == pytest.approx(6 / 8)
    with pytest.raises(ValueError):
        cache.record_l3(-1, 0)


def test_l3_environment(tmp_path: Path) -> None:
    local = l3_environment(settings_for(tmp_path))
    assert local == {
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }
    remote = l3_environment(settings_for(tmp_path, redis_url="redis://127.0.0.1:6390/0"))
    assert remote["TORCHINDUCTOR_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert remote["TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE"] == "1"
    assert remote["TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE"] == "1"
    off = l3_environment(settings_for(tmp_path, redis_url="redis://x", cache={"remote_inductor_cache": False}))
    assert "TORCHINDUCTOR_REDIS_URL" not in off
    # No caching means no shared cache, but the local ones stay: AOT precompile serializes
    # through the AOTAutograd cache entry and fails without it.
    uncached = l3_environment(settings_for(tmp_path, redis_url="redis://x", compilation={"enable_caching": False}))
    assert uncached["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1" and uncached["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert "TORCHINDUCTOR_REDIS_URL" not in uncached
    # Every variable we set is one the installed torch actually reads.
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None
    root = Path(spec.origin).parent
    source = "".join(
        (root / rel).read_text()
        for rel in ("_inductor/config.py", "_functorch/config.py", "_inductor/remote_cache.py",
                    "_inductor/runtime/cache_dir_utils.py")
    )
    for name in remote | local:
        assert f'"{name}"' in source, f"torch does not read {name}"
