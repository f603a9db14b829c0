"""Session fixtures of the executor tests: a real local Ray cluster (a head and two one-CPU worker
nodes, each its own `ray start` processes, custom resources standing in for GPU models) and one
started executor per backend, shared by every test that asks for it.

The cluster starts only when a Ray test runs, and is torn down (every process it started killed)
at the end of the session, whatever happened.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from executor_harness import NODE_RESOURCES, LoopExecutor, executor_settings


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test,ray]')")
    from tezzeret.sandbox.ray_local import LocalCluster

    # Short: Ray's socket paths live under it and must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="tzray-"))
    cluster = LocalCluster(root)
    try:
        cluster.start()
        for name, resources in NODE_RESOURCES.items():
            cluster.add_node(name, cpus=1, resources=resources)
        yield cluster
    finally:
        pids = [pid for node in cluster.nodes.values() for pid in node.pids()]
        cluster.stop()
        left = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="session")
def ray_executor(ray_cluster: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopExecutor]:
    live = LoopExecutor(executor_settings(tmp_path_factory.mktemp("ray-forge"), "ray"))
    try:
        yield live
    finally:
        live.close()


@pytest.fixture(scope="session")
def local_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopExecutor]:
    live = LoopExecutor(executor_settings(tmp_path_factory.mktemp("local-forge"), "local"))
    try:
        yield live
    finally:
        live.close()


@pytest.fixture(params=["local", "ray"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(backend: str, request: pytest.FixtureRequest) -> LoopExecutor:
    """The started executor of `backend` (shared by the session)."""
    live: LoopExecutor = request.getfixturevalue(f"{backend}_executor")
    return live
