"""The L3 Redis reaches sandboxed workers through the pool's relay, on both backends: a worker with
no network (bubblewrap's empty network namespace) cannot open a TCP connection to Redis, yet its
Inductor's `TORCHINDUCTOR_REDIS_URL` (a Unix socket the pool serves) answers PING. On Ray the URL
travels to every node's pool in `ray_node.node_settings`."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from executor_harness import LoopExecutor, details, executor_settings

from tezzeret.sandbox.l3relay import L3Relay


@pytest.fixture
def redis_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    return str(redis_server.url)


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


async def test_the_relay_carries_torchs_cache_commands_and_nothing_else(redis_server) -> None:  # type: ignore[no-untyped-def]
    """What a worker can do with its socket: GET and SET of torch's `pt2:` keys; never the bus's
    streams, other keys, or the server itself."""
    import redis.asyncio as aioredis

    relay = L3Relay(redis_server.url, owner_uid=None)
    await relay.start()
    worker = aioredis.Redis.from_url(relay.worker_url())
    direct = redis_server.client()
    try:
        assert await worker.ping()
        await worker.set(b"pt2:fx-graph-v1::abc:c1", b"graph")
        assert await worker.get(b"pt2:fx-graph-v1::abc:c1") == b"graph" == direct.get(b"pt2:fx-graph-v1::abc:c1")
        direct.xadd("oona.kernel.ready", {"e": b"x"})
        direct.set("oona.secret", b"bus")
        for attempt in (worker.get("oona.secret"), worker.set("oona.secret", b"mine"), worker.flushall(),
                        worker.xadd("oona.kernel.ready", {"e": b"forged"}), worker.delete("pt2:fx-graph-v1::abc:c1"),
                        worker.keys("*"), worker.config_get("*")):
            with pytest.raises(redis.exceptions.ResponseError, match="not allowed"):
                await attempt
        assert direct.get("oona.secret") == b"bus" and direct.xlen("oona.kernel.ready") == 1
        assert direct.get(b"pt2:fx-graph-v1::abc:c1") == b"graph" and relay.refused == 7
    finally:
        await worker.aclose()
        direct.close()
        await relay.close()
