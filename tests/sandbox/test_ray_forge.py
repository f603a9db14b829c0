"""The forge on the Ray backend: a job whose compile node dies mid-compile runs again on a live
node and ends once; a forge killed with a job on a remote node recovers it from its journal and
ends it once; a job for a target no node offers says why it waits, in its job view and in health.
Real Ray nodes (separate processes, SIGKILLed), real sandboxed workers, real compiles."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from executor_harness import NODE_RESOURCES, executor_settings
from sandbox_harness import HERE

from tezzeret.artifact.target import target_string
from tezzeret.blueprint import library_blueprint
from tezzeret.compile.identity import host_target
from tezzeret.config import Settings
from tezzeret.forge.errors import RequestInvalid
from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.metrics import JOBS_RESUBMITTED
from tezzeret.sandbox import make_executor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TASKS = {"compile": "ray_forge_tasks:slow_compile"}


def _settings(state: Path, namespace: str, **ray: Any) -> Settings:
    targets = {target_string(host_target()): {"tezzeret_cpu_test": 1}}
    return executor_settings(
        state, "ray",
        ray={"targets": targets, "namespace": namespace, **ray},
        compilation={"max_concurrent_jobs": 1, "idle_recompilation": False},
        polling={"initial_full_scan": False, "refresh_interval_minutes": 0},
        timeouts_ms={"emergency_compilation": 240_000},
    )


async def _forge(settings: Settings) -> Forge:
    executor = make_executor(settings, tasks=TASKS, extra_sys_path=[HERE], warm="torch")
    return await Forge(settings, executor=executor).start()


def _request(name: str = "mlp_512", target: str = "") -> pb.CompilationRequest:
    return pb.CompilationRequest(schema_version=SCHEMA_VERSION, blueprint=library_blueprint(name),
                                 strategy=pb.STRATEGY_EMERGENCY, options=pb.CompilationOptions(target_hardware=target))


async def _busy_node(forge: Forge, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [n for n in forge.executor.status().nodes if n.get("in_flight")]
        if busy:
            return str(busy[0]["node_id"])
        await asyncio.sleep(0.2)
    raise AssertionError("the job never started on a compile node")


def _name_of(cluster: Any, node_id: str) -> str:
    return next(name for name, node in cluster.nodes.items() if node.node_id == node_id)


async def test_a_job_whose_node_dies_mid_compile_runs_again_elsewhere_and_ends_once(
    ray_cluster: Any, tmp_path: Path
) -> None:
    forge = await _forge(_settings(tmp_path / "state", f"tz-forge-{uuid.uuid4().hex[:8]}"))
    victim = ""
    before = JOBS_RESUBMITTED.labels(reason="node_lost")._value.get()
    try:
        sub = await forge.submit(_request())
        victim_id = await _busy_node(forge)
        victim = _name_of(ray_cluster, victim_id)
        ray_cluster.kill_node(victim)
        job = await forge.wait(sub.job_id, timeout=400)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        view = forge.job(sub.job_id)
        assert len(view["node_losses"]) == 1 and "lost" in view["node_losses"][0], view["node_losses"]
        assert JOBS_RESUBMITTED.labels(reason="node_lost")._value.get() == before + 1
        # Losing a machine is nobody's failure: no breaker heard of it, the blueprint is compiled.
        assert not forge.conservative.active
        assert all(not snap.get("last_failure") for snap in forge.breakers.snapshot().values())
        assert forge.store.get_blueprint(job.digest).state == "COMPILED"
        assert [a["artifact_id"] for a in forge.list_artifacts()] == [job.result.artifact_id]
        # The record of every attempt shows one, successful, final compile of this blueprint.
        path = await forge.artifact_file(job.result.artifact_id)
        assert path.exists()
    finally:
        await forge.close(grace_s=0)
        if victim:
            ray_cluster.add_node(victim, cpus=1, resources=NODE_RESOURCES[victim])


_DRIVER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {here!r})
    import ray
    from test_ray_forge import _forge, _request, _settings, _busy_node

    async def main():
        ray.init(address={address!r}, log_to_driver=False)
        forge = await _forge(_settings(Path({state!r}), {namespace!r}))
        sub = await forge.submit(_request())
        await _busy_node(forge)
        print("RUNNING", sub.job_id, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_a_forge_killed_with_a_job_on_a_remote_node_ends_it_once_after_restart(
    ray_cluster: Any, tmp_path: Path
) -> None:
    namespace = f"tz-forge-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    script = _DRIVER.format(here=str(HERE), address=ray_cluster.address, state=str(state), namespace=namespace)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ), start_new_session=True)
    try:
        assert driver.stdout is not None
        line = await asyncio.to_thread(driver.stdout.readline)
        assert line.startswith("RUNNING"), line
        job_id = line.split()[1]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    forge = await _forge(_settings(state, namespace))
    try:
        # The journal had the job as started: recovery runs it again (the dead forge's run still
        # holds a slot on its node until it ends; the new run waits or takes the other node).
        job = await forge.wait(job_id, timeout=400)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        assert [a["artifact_id"] for a in forge.list_artifacts()] == [job.result.artifact_id]
        assert forge.store.get_blueprint(job.digest).state == "COMPILED"
        assert forge.last_recovery is not None
    finally:
        await forge.close(grace_s=0)


async def test_a_job_for_a_target_no_node_offers_says_why_it_waits(ray_cluster: Any, tmp_path: Path) -> None:
    # This host's target is mapped to a resource no node has: the job waits, and says so.
    settings = _settings(tmp_path / "state", f"tz-forge-{uuid.uuid4().hex[:8]}", unplaceable_timeout_s=30)
    settings.ray.targets = {target_string(host_target()): {"tezzeret_gpu_model_c": 1}}
    forge = await _forge(settings)
    try:
        sub = await forge.submit(_request())
        deadline = time.monotonic() + 20
        reason = None
        while time.monotonic() < deadline and not reason:
            reason = forge.job(sub.job_id)["waiting_reason"]
            await asyncio.sleep(0.2)
        assert reason and "no node offers" in reason, reason
        health = forge.health()
        assert any(r.code == "target-unavailable" for r in health.details), health.reasons
        job = await forge.wait(sub.job_id, timeout=120)
        assert job.status is JobStatus.FAILED and job.error_code == "SANDBOX_NO_NODE_FOR_TARGET", job.error
        # Nobody's failure either: the host is fine, only the cluster lacks the hardware.
        assert not forge.conservative.active
    finally:
        await forge.close(grace_s=0)


async def test_a_request_naming_a_gpu_target_is_built_for_it_on_a_node_offering_it(ray_cluster: Any, tmp_path: Path) -> None:
    # Node a offers an H100 target (its resource stands for the GPU); both offer this host's CPU.
    # The artifact id, the node the job runs on and the worker's compile follow the target named.
    settings = _settings(tmp_path / "state", f"tz-forge-{uuid.uuid4().hex[:8]}")
    cpu = target_string(host_target())
    settings.ray.targets = {cpu: {"tezzeret_cpu_test": 1}, "cuda-sm90-cu130": {"tezzeret_gpu_model_a": 1}}
    forge = await Forge(settings, executor=make_executor(settings, extra_sys_path=[HERE], warm="torch")).start()
    try:
        with pytest.raises(RequestInvalid, match="builds for cpu-.*cuda-sm90-cu130 only"):
            await forge.submit(_request(target="cuda-sm80"))
        sub = await forge.submit(_request(target="cuda-sm90"))
        job = forge.registry.get(sub.job_id)
        assert job.target == "cuda-sm90-cu130" and "-cuda-sm90-cu130-emergency-" in job.artifact_id
        assert forge.runner.worker_job(job, job.strategy, budget_ms=1000).target == "cuda-sm90-cu130"
        ended = await forge.wait(sub.job_id, timeout=300)
        runs = {n["node_id"]: n["jobs_run"] for n in forge.executor.status().nodes}
        assert runs.get(ray_cluster.nodes["a"].node_id) == 1 and not runs.get(ray_cluster.nodes["b"].node_id), runs
        # This cluster's torch is a CPU build: the worker on node a says so instead of building
        # a CPU artifact under a GPU artifact's id.
        assert ended.status is JobStatus.FAILED and ended.error_code == "TARGET_UNAVAILABLE", ended.error
        assert "CPU build" in ended.error and not forge.list_artifacts()
        # A request naming no target (or this host's CPU) is the CPU artifact, as before.
        plain = await forge.submit(_request())
        named = await forge.submit(_request(target=cpu))
        assert named.job.artifact_id == plain.job.artifact_id and named.job.target == ""
        assert f"-{cpu}-emergency-" in plain.job.artifact_id and plain.job.target == ""
        assert (await forge.wait(plain.job_id, timeout=300)).status is JobStatus.SUCCEEDED
    finally:
        await forge.close(grace_s=0)
