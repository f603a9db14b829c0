"""Store and cache speed: durable writes, lookups, claims, artifact puts, L1 dedup.

Prints one JSON line with the numbers and the machine (CPU model, cores, torch version). Runs alone
on a temporary directory on the same filesystem as the state dir would be (`--dir` to choose).
Every write is a durable SQLite commit (WAL + synchronous=FULL), so the write rates are bounded by
fsync latency of the disk under test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tezzeret.cache import CompileCache, InFlight, Miss, store_l2
from tezzeret.config import load_settings
from tezzeret.leyline import codec, pb
from tezzeret.store import SigningKey, Store

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script


def _ir(i: int) -> bytes:
    ir = pb.BlueprintIR(schema_version=1)
    ir.nodes.add(name="n", op="relu", inputs=["x"])
    ir.metadata.name = f"bench-{i}"
    return codec.encode(ir)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _dedup(cache: CompileCache[object], n: int) -> float:
    start = time.perf_counter()

    async def one() -> object:
        found = await cache.lookup_or_join("bench-artifact")
        if isinstance(found, Miss):
            await asyncio.sleep(0)
            found.complete("ok")
            return "ok"
        if isinstance(found, InFlight):
            return await found
        return found.result

    results = await asyncio.gather(*(one() for _ in range(n)))
    assert all(r == "ok" for r in results)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        store = Store.open(root / "store")
        key = SigningKey.load_or_create(root / "keys")
        digests = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(args.n)]

        t = time.perf_counter()
        for i, d in enumerate(digests):
            store.put_blueprint(_ir(i), d, source="bench")
        put_bp_ms = (time.perf_counter() - t) * 1000 / args.n

        t = time.perf_counter()
        for d in digests:
            assert store.claim(d, "bench")
        claim_ms = (time.perf_counter() - t) * 1000 / args.n

        payload = root / "artifact.bin"
        artifact_ids = []
        put_art: list[float] = []
        for i, d in enumerate(digests[:50]):
            payload.write_bytes(os.urandom(3_500_000))  # the size of one AOT-precompiled entry
            m = pb.CompiledKernelArtifact(schema_version=1, artifact_id=f"{d[:16]}-cpu-fast-bench", blueprint_digest=d,
                                          strategy=pb.STRATEGY_FAST, target="cpu", toolchain_hash="bench")
            t = time.perf_counter()
            store.put_artifact(m, payload, key.sign_manifest(m))
            put_art.append((time.perf_counter() - t) * 1000)
            store.transition(d, "COMPILED")
            artifact_ids.append(m.artifact_id)

        lookups: list[float] = []
        for _ in range(5):
            for aid in artifact_ids:
                t = time.perf_counter()
                store.has_artifact(aid)
                lookups.append((time.perf_counter() - t) * 1e6)

        t = time.perf_counter()
        cands = store.recompilation_candidates("other-toolchain")
        candidates_ms = (time.perf_counter() - t) * 1000

        cache: CompileCache[object] = CompileCache.from_settings(
            load_settings(state_dir=str(root / "state")), l2=store_l2(store)
        )
        dedup_ms = asyncio.run(_dedup(cache, 1000))
        store.close()

    print(json.dumps({
        "bench": "store",
        "blueprints": args.n,
        "put_blueprint_ms": round(put_bp_ms, 3),
        "claim_ms": round(claim_ms, 3),
        "put_artifact_3_5MB_ms_p50": round(statistics.median(put_art), 2),
        "put_artifact_3_5MB_ms_p95": round(_pct(put_art, 0.95), 2),
        "has_artifact_us_p50": round(statistics.median(lookups), 1),
        "has_artifact_us_p99": round(_pct(lookups, 0.99), 1),
        "recompilation_candidates_ms": round(candidates_ms, 2),
        "recompilation_candidates": len(cands),
        "dedup_1000_duplicates_ms": round(dedup_ms, 2),
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
