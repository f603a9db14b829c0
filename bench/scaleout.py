"""Scale-out on Ray: compiles per minute on one node and on two, and what a node kill costs a job.

Starts a local Ray cluster (`tezzeret.sandbox.ray_local`: a head with no CPUs and worker nodes of
one CPU each, separate `ray start` processes) and drives `RayExecutor` as the forge would:
  1. one node: the same FAST compiles of `--blueprints` library blueprints, all submitted at once;
  2. a second node joins; the same compiles again (fresh actors);
  3. one compile alone (the baseline), then the same compile with its node SIGKILLed
     `--kill-at` of the way through the baseline; on OUTCOME_NODE_LOST it is resubmitted at once
     (the forge's journal does this), and lands on the surviving node.
Every phase starts on fresh state dirs (cold local Inductor caches) with no shared L3
(`compilation.enable_caching: false`), so no run warms another, and the contention CPU cap is off: two nodes on one machine would count each other's compiles as
training load. Prints one JSON line: `one_node_cpm`, `two_node_cpm`, `efficiency` (two-node
rate / (2 x one-node rate), target >= 0.8), `kill_cost_s` (completion time with the kill minus
without; target <= the job's own compile time + 15 s), the detail behind each, and the machine.

Usage: python bench/scaleout.py [--blueprints mlp_512,residual_mlp_256,...] [--kill-at 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

from tezzeret.blueprint import library_blueprint
from tezzeret.config import load_settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox import make_executor
from tezzeret.sandbox.ray_local import LocalCluster

DEFAULT_BLUEPRINTS = "mlp_512,residual_mlp_256,swiglu_mlp_512,gated_token_mixer_128,lora_adapter_1024,rmsnorm_gated_mlp_768"
NODE_RESOURCES = {"tezzeret_cpu_bench": 1.0}
# A generous per-job limit: the tier's budget under a loaded 2-core machine would cut compiles short.
TIMEOUT_MS = 300_000


def _settings(root: Path) -> Any:
    """Fresh state on the forge and on every node (so each phase starts with cold Inductor
    caches), no shared L3, no CPU cap."""
    run = uuid.uuid4().hex[:8]
    return load_settings(
        state_dir=str(root / f"forge-{run}"),
        compilation={"enable_caching": False},
        emergency={"reserved_worker": False},
        sandbox={"backend": "ray", "contended_cpu_quota": 0},
        ray={"node_state_dir": str(root / f"nodes-{run}"), "namespace": f"scaleout-{run}",
             "targets": {"cpu-bench": NODE_RESOURCES}, "poll_interval_s": 0.5},
    )


def _job(name: str, out: Path, tag: str) -> pb.WorkerJob:
    return pb.WorkerJob(
        schema_version=1, job_id=f"{tag}-{name}", task="compile", target="cpu-bench", strategy=pb.STRATEGY_FAST,
        blueprint=codec.encode(library_blueprint(name)), output_dir=str(out / tag / name), cpu_only=True,
        timeout_ms=TIMEOUT_MS,
    )


async def _batch(settings: Any, names: list[str], out: Path, tag: str) -> dict[str, object]:
    executor = make_executor(settings)
    await executor.start()
    try:
        started = time.perf_counter()
        results = await asyncio.gather(*(executor.run(_job(name, out, tag)) for name in names))
        elapsed = time.perf_counter() - started
        nodes = Counter(next((kv.value[:12] for kv in r.details if kv.key == "node_id"), "?") for r in results)
    finally:
        await executor.close(0)
    ok = sum(1 for r in results if r.outcome == pb.OUTCOME_SUCCESS)
    return {
        "elapsed_s": round(elapsed, 1),
        "cpm": round(ok / elapsed * 60, 2),
        "outcomes": dict(Counter(pb.JobOutcome.Name(r.outcome) for r in results)),
        "jobs_per_node": dict(nodes),
        "compile_s": sorted(round(r.compile_ms / 1000, 1) for r in results),
    }


async def _baseline(settings: Any, name: str, out: Path) -> float:
    executor = make_executor(settings)
    await executor.start()
    try:
        started = time.perf_counter()
        base = await executor.run(_job(name, out, "base"))
        assert base.outcome == pb.OUTCOME_SUCCESS, base
        return time.perf_counter() - started
    finally:
        await executor.close(0)


async def _kill(cluster: LocalCluster, settings: Any, name: str, out: Path, kill_at: float, base_s: float) -> dict[str, object]:
    executor = make_executor(settings)
    await executor.start()
    try:
        job = _job(name, out, "killed")
        started = time.perf_counter()
        running = asyncio.create_task(executor.run(job))
        while not (busy := [n for n in executor.status().nodes if n["in_flight"]]):
            await asyncio.sleep(0.05)
        victim = next(k for k, node in cluster.nodes.items() if node.node_id == busy[0]["node_id"])
        await asyncio.sleep(max(0.0, base_s * kill_at - (time.perf_counter() - started)))
        killed_at = time.perf_counter()
        await asyncio.to_thread(cluster.kill_node, victim)
        lost = await running
        detected_s = time.perf_counter() - killed_at
        resubmitted = await executor.run(job)
        total_s = time.perf_counter() - started
    finally:
        await executor.close(0)
    return {
        "blueprint": name,
        "baseline_s": round(base_s, 1),
        "killed_after_s": round(killed_at - started, 1),
        "first_outcome": pb.JobOutcome.Name(lost.outcome),
        "node_lost_detected_s": round(detected_s, 1),
        "resubmitted_outcome": pb.JobOutcome.Name(resubmitted.outcome),
        "with_kill_s": round(total_s, 1),
        "kill_cost_s": round(total_s - base_s, 1),
        "target_s": round(base_s + 15, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprints", default=DEFAULT_BLUEPRINTS)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the baseline compile time")
    args = parser.parse_args()
    names = args.blueprints.split(",")
    with tempfile.TemporaryDirectory(prefix="tzs-") as tmp:
        root = Path(tmp)
        cluster = LocalCluster(root / "cluster")
        try:
            cluster.start()
            cluster.add_node("a", cpus=1, resources=NODE_RESOURCES)
            one = asyncio.run(_batch(_settings(root), names, root / "out", "one"))
            cluster.add_node("b", cpus=1, resources=NODE_RESOURCES)
            two = asyncio.run(_batch(_settings(root), names, root / "out", "two"))
            # Baseline and killed run each on fresh node state: neither warms the other.
            base_s = asyncio.run(_baseline(_settings(root), names[0], root / "out"))
            kill = asyncio.run(_kill(cluster, _settings(root), names[0], root / "out", args.kill_at, base_s))
        finally:
            cluster.stop()
    print(json.dumps({
        "bench": "scaleout",
        "jobs": len(names),
        "one_node_cpm": one["cpm"],
        "two_node_cpm": two["cpm"],
        "efficiency": round(float(two["cpm"]) / (2 * float(one["cpm"])), 3) if one["cpm"] else None,
        "kill_cost_s": kill["kill_cost_s"],
        "one_node": one,
        "two_nodes": two,
        "kill": kill,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
