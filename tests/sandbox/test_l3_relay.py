"""The L3 Redis reaches sandboxed workers through the pool's relay, on both backends: a worker with
no network (bubblewrap's empty network namespace) cannot open a TCP connection to Redis, yet its
Inductor's `TORCHINDUCTOR_REDIS_URL` (a Unix socket the pool serves) answers PING. On Ray the URL
travels to every node's pool in `ray_node.node_settings`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from executor_harness import LoopExecutor, details, executor_settings



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def test_workers_reach_the_l3_redis_only_through_the_relay(backend: str, redis_url: str, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    settings = executor_settings(tmp_path / "state", backend, redis_url=redis_url, emergency={"reserved_worker": False})
    live = LoopExecutor(settings)
    try:
        seen = details(live.run("l3_env", target="model-b"))
        assert seen["remote"] == "1" and seen["url"].startswith("unix://"), seen
        assert seen["ping"] == "True", seen
        socket_path = Path(seen["url"].removeprefix("unix://").split("?")[0])
        assert socket_path.is_socket()
        if live.status().net_isolated:
            port = redis_url.rsplit(":", 1)[1].split("/")[0]
            direct = details(live.run("connect_out", params={"port": port}, target="model-b"))
            assert direct["connect"] != "connected", direct
        status = live.status()
        assert status.workers_alive >= 1
    finally:
        live.close()
    # The relay went with its worker (the nodes of the test cluster share this machine's /tmp).
    assert not socket_path.parent.exists()


def test_no_l3_redis_means_no_relay(tmp_path: Path) -> None:
    live = LoopExecutor(executor_settings(tmp_path / "state", "local", emergency={"reserved_worker": False}))
    try:
        seen = details(live.run("l3_env"))
        assert seen["url"] == "" and seen["remote"] == "", seen
    finally:
        live.close()
