"""What a job costs the pool inside a Ray actor, against the same pool alone (issue 19's "6-7x").

Runs the same jobs one at a time (a no-op, and a job leaving a 4 MiB artifact that comes back to
this process) through:
  - `local`: a `SandboxExecutor` in this process, no Ray running;
  - `local+ray`: the same, with a one-node Ray cluster idling beside it (its processes' CPU);
  - `ray`: `RayExecutor` on that cluster (the same pool inside a compile actor, the artifact's
    bytes through Ray's object store),
each with the pool's contention CPU cap at its default (`sandbox.contended_cpu_quota` 0.25) and
off (0). Workers are recycled every `--recycle-after` jobs (1000: never, in a run; production's
20 puts a worker respawn, seconds of torch import, in front of every 20th job). Prints one JSON
line: per configuration the p50 and p90 milliseconds of each job, how many took over a second,
how many workers were recycled, and the cap's state afterwards (`capped`, `others_cores`: the CPU that processes outside the sandbox used,
which is what turns the cap on), plus the machine.

Usage: python bench/ray_overhead.py [--reps 30] [--recycle-after 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_tasks import TASKS
from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

from tezzeret.config import load_settings
from tezzeret.leyline import pb
from tezzeret.sandbox import make_executor
from tezzeret.sandbox.ray_local import LocalCluster

HERE = Path(__file__).resolve().parent


def _settings(root: Path, backend: str, quota: float, recycle_after: int) -> Any:
    return load_settings(
        state_dir=str(root / f"{backend}-{quota}-{uuid.uuid4().hex[:6]}"),
        emergency={"reserved_worker": False},
        sandbox={"backend": backend, "contended_cpu_quota": quota, "max_jobs_per_worker": recycle_after},
        ray={"node_state_dir": str(root / "nodes"), "namespace": f"overhead-{uuid.uuid4().hex[:8]}"},
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def _measure(settings: Any, reps: int, out: Path) -> dict[str, object]:
    executor = make_executor(settings, tasks=TASKS, extra_sys_path=[HERE], warm="torch")
    await executor.start()
    try:
        async def once(task: str, i: int) -> float:
            job = pb.WorkerJob(job_id=f"{task}-{i}-{uuid.uuid4().hex[:6]}", task=task, output_dir=str(out / f"{task}-{i}"))
            if task == "blob":
                job.params.add(key="mib", value="4")
            started = time.perf_counter()
            result = await executor.run(job)
            elapsed = (time.perf_counter() - started) * 1000
            assert result.outcome == pb.OUTCOME_SUCCESS, result
            return elapsed

        for i in range(3):  # first jobs import the task module and touch cold pages
            await once("noop", -i)
        noop: list[float] = []
        blob: list[float] = []
        for i in range(reps):
            noop.append(await once("noop", i))
            blob.append(await once("blob", i))
        status = executor.status()
        throttle = status.nodes[0].get("throttle", {}) if status.nodes else status.throttle
        return {
            # Jobs over a second: each waited for a worker the pool had just recycled.
            "slow_jobs": sum(1 for ms in noop + blob if ms > 1000), "recycled": status.recycled,
            "noop_p50_ms": _pct(noop, 0.5), "noop_p90_ms": _pct(noop, 0.9),
            "blob4_p50_ms": _pct(blob, 0.5), "blob4_p90_ms": _pct(blob, 0.9),
            "noop_mean_ms": round(statistics.fmean(noop), 1),
            "throttle": {k: throttle.get(k) for k in ("capped", "others_cores", "threshold_cores", "off") if k in throttle},
        }
    finally:
        await executor.close(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--recycle-after", type=int, default=1000,
                        help="sandbox.max_jobs_per_worker (default 20 in production: a respawn every 20 jobs)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tzo-") as tmp:
        root = Path(tmp)
        for quota in (0.25, 0.0):
            results[f"local quota={quota}"] = asyncio.run(_measure(_settings(root, "local", quota, args.recycle_after), args.reps, root / "out"))
        cluster = LocalCluster(root / "cluster")
        try:
            cluster.start()
            cluster.add_node("a", cpus=1)
            time.sleep(5)  # let the new node's agents settle before measuring beside them
            for quota in (0.25, 0.0):
                results[f"local+ray quota={quota}"] = asyncio.run(_measure(_settings(root, "local", quota, args.recycle_after), args.reps, root / "out"))
                results[f"ray quota={quota}"] = asyncio.run(_measure(_settings(root, "ray", quota, args.recycle_after), args.reps, root / "out"))
        finally:
            cluster.stop()
    print(json.dumps({"bench": "ray_overhead", "reps": args.reps, "recycle_after": args.recycle_after,
                      "results": results, "machine": machine()}))


if __name__ == "__main__":
    main()
