"""L3 across Ray nodes: one node's compile warms another's through Inductor's caches on Redis.

Starts a `redis-server` on a free loopback port and a local Ray cluster of two one-CPU nodes
(`tezzeret.sandbox.ray_local`), each offering its own target, so a job can be sent to either.
Each node's compile actor has its own state dir and so its own local Inductor cache: the only thing
the nodes share is Redis, which their sandboxed workers reach through the pool's L3 relay
(`sandbox.l3relay`; the workers keep no network). Compiles one blueprint at FAST (Tezzeret's
compile task: AOT precompile) on node A, then on node B; then a plain `torch.compile` of a small
block (`bench_tasks:inductor_block`) on A, then on B. Prints one JSON line with each job's time
and the Inductor cache hits and misses its worker reported (`inductor_cache_hits`/`_misses` in the result), the
Redis keys written, and the machine.

Usage: python bench/ray_l3.py [--blueprint mlp_512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_tasks import TASKS
from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

from tezzeret.blueprint import library_blueprint
from tezzeret.config import load_settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox import DEFAULT_TASKS, make_executor
from tezzeret.sandbox.ray_local import LocalCluster


HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _compile_on_a_then_b(settings: Any, name: str, out: Path) -> list[dict[str, object]]:
    executor = make_executor(settings, tasks={**DEFAULT_TASKS, **TASKS}, extra_sys_path=[HERE])
    await executor.start()
    runs = []
    try:
        for task, node in (("compile", "a"), ("compile", "b"), ("inductor_block", "a"), ("inductor_block", "b")):
            job = pb.WorkerJob(
                schema_version=1, job_id=f"{task}-{name}-on-{node}", task=task, target=f"model-{node}",
                strategy=pb.STRATEGY_FAST, blueprint=codec.encode(library_blueprint(name)),
                output_dir=str(out / task / node), cpu_only=True, timeout_ms=300_000,
            )
            started = time.perf_counter()
            result = await executor.run(job)
            details = {kv.key: kv.value for kv in result.details}
            runs.append({
                "task": task,
                "node": node,
                "outcome": pb.JobOutcome.Name(result.outcome),
                "wall_s": round(time.perf_counter() - started, 1),
                "compile_s": round(result.compile_ms / 1000, 1),
                "inductor_cache_hits": int(details.get("inductor_cache_hits", "0")),
                "inductor_cache_misses": int(details.get("inductor_cache_misses", "0")),
                "node_id": details.get("node_id", "")[:12],
            })
    finally:
        await executor.close(0)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blueprint", default="mlp_512")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="tzl3-") as tmp:
        root = Path(tmp)
        port = _free_port()
        redis = subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--dir", tmp], stdout=subprocess.DEVNULL)
        cluster = LocalCluster(root / "cluster")
        try:
            cluster.start()
            cluster.add_node("a", cpus=1, resources={"tezzeret_model_a": 1})
            cluster.add_node("b", cpus=1, resources={"tezzeret_model_b": 1})
            settings = load_settings(
                state_dir=str(root / "forge"), redis_url=f"redis://127.0.0.1:{port}/0",
                emergency={"reserved_worker": False}, sandbox={"backend": "ray", "contended_cpu_quota": 0},
                ray={"node_state_dir": str(root / "nodes"), "namespace": f"l3-{uuid.uuid4().hex[:8]}",
                     "targets": {"model-a": {"tezzeret_model_a": 1}, "model-b": {"tezzeret_model_b": 1}}},
            )
            runs = asyncio.run(_compile_on_a_then_b(settings, args.blueprint, root / "out"))
            import redis as redis_client

            keys = redis_client.Redis(port=port).dbsize()
        finally:
            cluster.stop()
            redis.kill()
            redis.wait(10)
    print(json.dumps({"bench": "ray_l3", "blueprint": args.blueprint, "runs": runs, "redis_keys": keys, "machine": machine()}))


if __name__ == "__main__":
    main()
