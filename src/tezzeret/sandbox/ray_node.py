"""A compile node: the long-lived Ray actor that owns one node-local sandbox pool.

Owns: what the forge sends a node (`node_settings`: the pool's limits and the L3 cache, nothing
else), the actor class `CompileNode` (a `SandboxExecutor` on its own event-loop thread, started
warm in `__init__`, so an actor Ray restarts is warm again without being asked), running one job
with a node-local output directory and sending back the worker's result plus the bytes of every
file the job left there. The actor is threaded (Ray `max_concurrency`): `run` blocks its calling
thread on the pool's loop while status calls stay answered.

It must never see the signing key, the WAL, the store or the bus: the forge keeps those, and
`node_settings` is the whole of what crosses. It must never import ray (the forge wraps the class
with `ray.remote`), so the same code runs without Ray in tests of the node alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from tezzeret.config import Settings, load_settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox.pool import SandboxExecutor

# What a node's reply holds: the encoded `pb.WorkerResult`, the artifact's path relative to the
# output dir ("" when none), and every output file by relative path.
Reply = dict[str, Any]


def node_settings(settings: Settings) -> dict[str, Any]:
    """The part of the forge's settings a compile node needs: the pool's limits and the L3.

    Deliberately a whitelist: bus keys, API tokens, signing and WAL settings never leave the forge.
    The node's state dir is chosen by the node (`ray.node_state_dir`).
    """
    from tezzeret.cache import l3_redis_url

    return {
        "sandbox": settings.sandbox.model_dump(mode="json") | {"backend": "local"},
        "resources": settings.resources.model_dump(mode="json"),
        "compilation": settings.compilation.model_dump(mode="json"),
        "timeouts_ms": settings.timeouts_ms.model_dump(mode="json"),
        "emergency": {"reserved_worker": settings.emergency.reserved_worker},
        "cache": {
            "remote_inductor_cache": settings.cache.remote_inductor_cache,
            "l3_redis_url": l3_redis_url(settings),
        },
    }


def toolchain() -> dict[str, str]:
    """Versions that decide whether an artifact built here loads where the forge expects."""

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "missing"

    return {"python": platform.python_version(), "torch": of("torch"), "tezzeret": of("tezzeret")}


def config_digest(config: Mapping[str, Any], tasks: Mapping[str, str] | None, sys_path: Sequence[str], warm: str) -> str:
    """Names the pool an actor runs, so a restarted forge adopts only actors built as it would."""
    blob = json.dumps([config, dict(tasks or {}), list(sys_path), warm], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CompileNode:
    """One node's pool. Every method may be called from several actor threads at once."""

    def __init__(
        self,
        config: dict[str, Any],
        state_dir: str,
        tasks: dict[str, str] | None,
        extra_sys_path: list[str],
        warm: Literal["inductor", "torch", "none"],
        cores: int | None = None,
    ) -> None:
        self.settings = load_settings(**config, state_dir=state_dir)
        if cores is not None:
            # Size the pool by the CPUs the cluster says this node has, not by the host's count.
            self.settings.compilation.max_concurrent_jobs = self.settings.compile_slots(cores)
            self.settings.sandbox.training_reserved_cores = 0
        self.digest = config_digest(config, tasks, extra_sys_path, warm)
        self.results_dir = Path(state_dir) / "results"
        shutil.rmtree(self.results_dir, ignore_errors=True)
        self.results_dir.mkdir(parents=True)
        self.pool = SandboxExecutor(self.settings, tasks=tasks, extra_sys_path=[Path(p) for p in extra_sys_path], warm=warm)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="compile-node-pool", daemon=True)
        self.thread.start()
        # Warm now, not on the first call: an actor Ray restarts after a crash is ready by itself.
        self.started = asyncio.run_coroutine_threadsafe(self.pool.start(), self.loop)

    def ready(self) -> dict[str, Any]:
        """Waits until the pool is warm (raises what its start raised); returns `describe()`."""
        self.started.result()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        status = self.pool.status()
        return {
            "pid": os.getpid(),
            "host": platform.node(),
            "digest": self.digest,
            "toolchain": toolchain(),
            "slots": status.slots - (1 if status.emergency_slot else 0),
            "emergency_slot": status.emergency_slot,
            "pool": self.status(),
        }

    def status(self) -> dict[str, Any]:
        """The pool's status as plain values; never waits for the pool."""
        if not self.started.done():
            return {"state": "warming"}
        if self.started.exception() is not None:
            return {"state": "failed", "error": str(self.started.exception())}
        s = self.pool.status()
        return {
            "state": "ready", "isolation_level": s.isolation_level, "isolation_note": s.isolation_note,
            "net_isolated": s.net_isolated, "fs_readonly": s.fs_readonly, "nproc_enforced": s.nproc_enforced,
            "workers_alive": s.workers_alive, "workers_busy": s.workers_busy, "jobs_run": s.jobs_run,
            "recycled": s.recycled, "last_spawn_error": s.last_spawn_error, "throttle": s.throttle,
        }

    def run(self, job_bytes: bytes, emergency: bool) -> Reply:
        """Run one job in the pool; its outputs come back as bytes and are deleted here."""
        self.started.result()
        job = codec.decode(pb.WorkerJob, job_bytes)
        # The forge validated the id; the suffix keeps a resubmitted job apart from a stale run.
        out = self.results_dir / f"{job.job_id}-{uuid.uuid4().hex[:8]}"
        job.output_dir = str(out)
        try:
            result = asyncio.run_coroutine_threadsafe(self.pool.run(job, emergency=emergency), self.loop).result()
            files: dict[str, bytes] = {}
            artifact = ""
            if result.outcome == pb.OUTCOME_SUCCESS and out.is_dir():
                # The pool copied only regular files out of the worker's reach; read them back.
                for path in sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink()):
                    files[path.relative_to(out).as_posix()] = path.read_bytes()
                if result.artifact_path:
                    artifact = Path(result.artifact_path).relative_to(out).as_posix()
            return {"result": codec.encode(result), "artifact": artifact, "files": files}
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def close(self) -> None:
        """Kill the pool's workers (the forge calls this before it kills the actor)."""
        try:
            asyncio.run_coroutine_threadsafe(self.pool.close(0), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
