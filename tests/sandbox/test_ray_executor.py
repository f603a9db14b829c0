"""The Ray executor on a real local cluster (a head and two one-CPU nodes, `ray start` processes):
placement by target, jobs that wait for a target no node offers, a real compile, an actor crash
(node lost, actor back warm, a node that keeps failing drained), a node killed mid-job, and a
forge (driver) killed with jobs on remote nodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from executor_harness import NODE_RESOURCES, LoopExecutor, blob_bytes, details, executor_settings
from sandbox_harness import HERE

from tezzeret.leyline import codec, pb

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")


def _node(executor: LoopExecutor, node_id: str, *, on_loop: bool = False) -> dict[str, Any]:
    """The node's view in status (`on_loop`: called from a `wait_for` check, already on the loop)."""
    status = executor.executor.status() if on_loop else executor.status()
    return next(n for n in status.nodes if n["node_id"] == node_id)


def _ready(executor: LoopExecutor, node_id: str) -> bool:
    return any(n["node_id"] == node_id and n["state"] == "ready" for n in executor.executor.status().nodes)


def test_a_job_runs_on_a_node_offering_its_target(ray_executor: LoopExecutor, ray_cluster: Any) -> None:
    for name in ("a", "b"):
        result = ray_executor.run("noop", target=f"model-{name}")
        assert result.outcome == pb.OUTCOME_SUCCESS, result
        assert details(result)["node_id"] == ray_cluster.nodes[name].node_id
    nodes = {n["node_id"]: n for n in ray_executor.status().nodes}
    assert sorted(nodes[ray_cluster.nodes["a"].node_id]["targets"]) == ["cpu-test", "model-a"]
    assert sorted(nodes[ray_cluster.nodes["b"].node_id]["targets"]) == ["cpu-test", "model-b"]
    # The head has no CPU: it hosts no compile actor.
    assert ray_cluster.nodes["head"].node_id not in nodes


def test_a_job_for_a_target_no_node_offers_waits_with_a_reason(ray_executor: LoopExecutor) -> None:
    waiting = ray_executor.submit(ray_executor.job("noop", job_id="wants-model-c", target="model-c"))
    reason = ray_executor.wait_for("a waiting reason", lambda: ray_executor.executor.waiting_reason("wants-model-c"))
    assert "no node offers target 'model-c'" in reason and "tezzeret_gpu_model_c" in reason, reason
    listed = [w for w in ray_executor.status().waiting if w["job_id"] == "wants-model-c"]
    assert listed and listed[0]["target"] == "model-c" and listed[0]["reason"] == reason
    # Bounded: after `ray.unplaceable_timeout_s` it ends, as a result that says why.
    result = waiting.result(60)
    assert result.outcome == pb.OUTCOME_INTERNAL_ERROR and result.error_code == "SANDBOX_NO_NODE_FOR_TARGET", result
    assert "model-c" in result.error
    assert ray_executor.executor.waiting_reason("wants-model-c") is None
    unknown = ray_executor.run("noop", target="tpu-v9")
    assert unknown.error_code == "SANDBOX_NO_NODE_FOR_TARGET" and "no entry in ray.targets" in unknown.error, unknown


def test_a_real_compile_through_ray(ray_executor: LoopExecutor, tmp_path: Path) -> None:
    from tezzeret.blueprint import library_blueprint
    from tezzeret.artifact import file as artifact

    job = pb.WorkerJob(
        schema_version=1, job_id="compile-mlp", task="compile", target="cpu-test", strategy=pb.STRATEGY_EMERGENCY,
        blueprint=codec.encode(library_blueprint("mlp_512")), output_dir=str(tmp_path / "out"), cpu_only=True,
        memory_limit_mb=3072,
    )
    result = ray_executor.submit(job).result(600)
    assert result.outcome == pb.OUTCOME_SUCCESS, result
    path = Path(result.artifact_path)
    assert path.parent == tmp_path / "out" and path.name == result.manifest.artifact_id + ".tzart"
    manifest, _, _ = artifact.read_manifest(path)
    assert manifest == result.manifest and manifest.strategy == pb.STRATEGY_EMERGENCY
    assert details(result)["node_id"] in {n["node_id"] for n in ray_executor.status().nodes}


def test_a_crashed_actor_loses_its_job_comes_back_warm_and_is_drained_if_it_keeps_failing(
    ray_executor: LoopExecutor, ray_cluster: Any
) -> None:
    node_a = ray_cluster.nodes["a"].node_id
    ray_executor.wait_for("node a ready", lambda: _ready(ray_executor, node_a))
    pids = []
    for attempt in (1, 2):
        running = ray_executor.submit(ray_executor.job("sleep", params={"s": 60}, target="model-a"))
        ray_executor.wait_for("the job on node a", lambda: _node_busy(ray_executor, node_a))
        pids.append(_node(ray_executor, node_a)["actors"][0]["pid"])
        os.kill(pids[-1], signal.SIGKILL)
        lost = running.result(120)
        assert lost.outcome == pb.OUTCOME_NODE_LOST and lost.error_code == "SANDBOX_NODE_LOST", lost
        assert details(lost)["node_id"] == node_a
        if attempt == 1:
            # Ray restarts the actor and its pool warms by itself.
            ray_executor.wait_for("node a ready again", lambda: _ready(ray_executor, node_a))
    # Two failures in a row (ray.drain_after_failures): drained, and status says so.
    view = _node(ray_executor, node_a)
    assert view["state"] == "drained" and view["failures"] >= 2 and "actor lost" in view["note"], view
    waiting = ray_executor.submit(ray_executor.job("noop", job_id="while-drained", target="model-a"))
    reason = ray_executor.wait_for("a drained reason", lambda: ray_executor.executor.waiting_reason("while-drained"))
    assert "drained" in reason, reason
    # The drain ends after ray.drain_s; the restarted, warm actor takes the job.
    again = waiting.result(120)
    assert again.outcome == pb.OUTCOME_SUCCESS and details(again)["node_id"] == node_a, again
    view = _node(ray_executor, node_a)
    assert view["state"] == "ready" and view["failures"] == 0 and view["actors"][0]["pid"] not in pids, view


def _node_busy(executor: LoopExecutor, node_id: str) -> bool:
    return any(n["node_id"] == node_id and n["in_flight"] >= 1 for n in executor.executor.status().nodes)


def test_a_node_killed_mid_job_loses_it_and_the_resubmission_completes_elsewhere(
    ray_executor: LoopExecutor, ray_cluster: Any, tmp_path: Path
) -> None:
    job = ray_executor.job("sleep", job_id="survivor", params={"s": 60}, target="cpu-test", output_dir=str(tmp_path / "out"))
    running = ray_executor.submit(job)
    busy = ray_executor.wait_for("the job to start", lambda: [n for n in ray_executor.executor.status().nodes if n["in_flight"]])
    victim_id = busy[0]["node_id"]
    victim = next(name for name, node in ray_cluster.nodes.items() if node.node_id == victim_id)
    other = next(name for name in NODE_RESOURCES if name != victim)
    killed_at = time.monotonic()
    ray_cluster.kill_node(victim)
    lost = running.result(120)
    assert lost.outcome == pb.OUTCOME_NODE_LOST and details(lost)["node_id"] == victim_id, lost
    print(f"node {victim} killed; the job ended NODE_LOST after {time.monotonic() - killed_at:.1f} s")
    # The journal's resubmission: the same job, which now lands on the surviving node.
    del job.params[:]
    job.params.add(key="s", value="0.5")
    done = ray_executor.submit(job).result(120)
    assert done.outcome == pb.OUTCOME_SUCCESS, done
    assert details(done)["node_id"] == ray_cluster.nodes[other].node_id
    assert Path(done.artifact_path).read_bytes() == blob_bytes(0.01)
    # A job for the lost node's own model waits for a node offering it; a replacement node joins.
    orphan_target = f"model-{victim}"
    ray_executor.settings.ray.unplaceable_timeout_s = 300
    try:
        waiting = ray_executor.submit(ray_executor.job("noop", job_id="needs-replacement", target=orphan_target))
        # Until Ray declares the node dead (seconds), its actor shows as lost and restarting.
        reason = ray_executor.wait_for(
            "a no-node reason",
            lambda: "no node offers" in (ray_executor.executor.waiting_reason("needs-replacement") or "")
            and ray_executor.executor.waiting_reason("needs-replacement"),
            timeout=120,
        )
        assert f"no node offers target '{orphan_target}'" in reason, reason
        assert _node_state(ray_executor, victim_id) == "lost"
        replacement = ray_cluster.add_node(victim, cpus=1, resources=NODE_RESOURCES[victim])
        result = waiting.result(300)
    finally:
        ray_executor.settings.ray.unplaceable_timeout_s = 3
    assert result.outcome == pb.OUTCOME_SUCCESS and details(result)["node_id"] == replacement.node_id, result


def _node_state(executor: LoopExecutor, node_id: str) -> str:
    return next((n["state"] for n in executor.executor.status().nodes if n["node_id"] == node_id), "")


_DRIVER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {here!r})
    import ray
    from executor_harness import EXECUTOR_TASKS, executor_settings
    from tezzeret.leyline import pb
    from tezzeret.sandbox import make_executor

    async def main():
        ray.init(address={address!r}, log_to_driver=False)
        settings = executor_settings(Path({state!r}), "ray", ray={{"namespace": {namespace!r}}})
        executor = make_executor(settings, tasks=EXECUTOR_TASKS, extra_sys_path=[{here!r}], warm="torch")
        await executor.start()
        job = pb.WorkerJob(job_id="left-behind", task="sleep", target="model-b", params=[pb.KeyValue(key="s", value="8")])
        task = asyncio.create_task(executor.run(job))
        while not executor.status().workers_busy:
            await asyncio.sleep(0.1)
        print("RUNNING", flush=True)
        await task

    asyncio.run(main())
""")


def test_a_restarted_forge_adopts_the_warm_actors_a_killed_one_left(ray_cluster: Any, tmp_path: Path) -> None:
    namespace = f"tz-restart-{os.getpid()}"
    env = dict(os.environ)
    script = _DRIVER.format(here=str(HERE), address=ray_cluster.address, state=str(tmp_path / "state"), namespace=namespace)
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "RUNNING"
    finally:
        driver.kill()
        driver.wait(30)
    settings = executor_settings(tmp_path / "state", "ray", ray={"namespace": namespace})
    live = LoopExecutor(settings)
    try:
        status = live.status()
        assert [n["state"] for n in status.nodes] == ["ready", "ready"], status.nodes
        node_b = ray_cluster.nodes["b"].node_id
        # The dead forge's job still runs on node b's actor and holds its slot until it ends.
        live.wait_for("the orphan to show", lambda: _node(live, node_b, on_loop=True)["orphaned"] == 1, timeout=30)
        result = live.run("blob", params={"mib": 1}, target="model-b", output_dir=str(tmp_path / "out"))
        assert result.outcome == pb.OUTCOME_SUCCESS and details(result)["node_id"] == node_b, result
        assert Path(result.artifact_path).read_bytes() == blob_bytes(1)
    finally:
        live.close()

