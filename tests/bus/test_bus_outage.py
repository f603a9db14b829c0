"""Redis killed and restarted mid-run: publishes never fail or block, the outbox keeps them in order
within its bound, the `bus` breaker opens and closes, and every event arrives once Redis is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from bus_helpers import Collector, bus_settings, sample

from tezzeret.bus import OutboxFull, RedisStreamsBus, idempotent, SeenSet, topics
from tezzeret.resilience.breaker import BreakerState, CircuitBreaker
from tezzeret.resilience.clock import MonotonicClock


def _breaker() -> CircuitBreaker:
    return CircuitBreaker("bus", failure_threshold=2, timeout_ms=100, success_threshold=1, clock=MonotonicClock())


async def _until(cond, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_redis_restart_loses_no_event(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = bus_settings(tmp_path, redis_server.url)
    breaker = _breaker()
    forge = RedisStreamsBus(settings, breaker)
    urabrask = RedisStreamsBus(settings)
    got = Collector()
    # At least once: a flushed event may also have reached Redis just before it died.
    urabrask.subscribe(topics.KERNEL_READY, idempotent(got, SeenSet(ttl_s=600)), group="urabrask", consumer="u1")
    await forge.start()
    await urabrask.start()
    try:
        for i in range(5):
            await forge.publish(topics.KERNEL_READY, sample(topics.KERNEL_READY, i), message_id=f"before-{i}")
        await got.wait_for(5)

        redis_server.kill()
        compiled = 0
        for i in range(20):
            # The forge goes on compiling and announcing; nothing raises while Redis is gone.
            assert await forge.publish(topics.KERNEL_READY, sample(topics.KERNEL_READY, i), message_id=f"during-{i}") == f"during-{i}"
            compiled += 1
            await asyncio.sleep(0.01)
        assert compiled == 20
        health = forge.health()
        assert health["outbox_depth"] == 20 and health["connected"] is False
        assert breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
        assert breaker.consecutive_failures >= 2 or breaker.state == BreakerState.OPEN

        redis_server.start()
        await _until(lambda: len(got.deliveries) >= 25)
        assert await forge.flush(5.0)
        ids = [d.message_id for d in got.deliveries]
        assert ids == [f"before-{i}" for i in range(5)] + [f"during-{i}" for i in range(20)]
        assert breaker.state == BreakerState.CLOSED
        assert forge.health()["outbox_depth"] == 0 and forge.health()["outbox_flushed"] == 20

        await forge.publish(topics.KERNEL_READY, sample(topics.KERNEL_READY, 99), message_id="after")
        await got.wait_for(26)
    finally:
        await urabrask.close()
        await forge.close()


async def test_outbox_is_bounded(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = bus_settings(tmp_path, redis_server.url, bus={"outbox_limit": 5})
    forge = RedisStreamsBus(settings, _breaker())
    await forge.start()
    try:
        redis_server.kill()
        for i in range(5):
            await forge.publish(topics.KERNELS_CATALOG, sample(topics.KERNELS_CATALOG, i))
        with pytest.raises(OutboxFull, match="bus.outbox_limit=5") as err:
            await forge.publish(topics.KERNELS_CATALOG, sample(topics.KERNELS_CATALOG, 5))
        assert err.value.code == "BUS_OUTBOX_FULL"
        assert forge.health()["outbox_depth"] == 5
        redis_server.start()
        assert await forge.flush(10.0)
        stream = topics.stream_name(settings, topics.KERNELS_CATALOG)
        assert redis_server.client().xlen(stream) == 5
    finally:
        await forge.close()


async def test_start_with_redis_down_then_up(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = bus_settings(tmp_path, redis_server.url)
    redis_server.kill()
    forge = RedisStreamsBus(settings, _breaker())
    got = Collector()
    forge.subscribe(topics.COMPILATION_REQUEST, got, group="forge", consumer="c")
    await forge.start()  # must not raise: the forge starts without Redis
    try:
        await forge.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST), message_id="early")
        redis_server.start()
        [d] = await got.wait_for(1, timeout_s=20)
        assert d.message_id == "early"
    finally:
        await forge.close()
