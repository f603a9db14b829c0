"""A consumer process killed before ACK: its message is reclaimed by XAUTOCLAIM and processed once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bus_helpers import Collector, bus_settings, sample

from tezzeret.bus import RedisStreamsBus, topics


async def test_killed_consumer_message_reclaimed_and_processed_once(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = bus_settings(tmp_path, redis_server.url)
    marker = tmp_path / "taken"
    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, str(here / "bus_crash_consumer.py"), redis_server.url, str(tmp_path), str(marker)], env=env
    )
    publisher = RedisStreamsBus(settings)
    await publisher.start()
    try:
        await publisher.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST), message_id="job-1")
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, "the child consumer exited early"
            assert time.monotonic() < deadline, "the child never took the message"
            await asyncio.sleep(0.02)
        assert marker.read_text() == "job-1 1"
        child.kill()
        child.wait(timeout=10)

        stream = topics.stream_name(settings, topics.COMPILATION_REQUEST)
        [pending] = redis_server.client().xpending_range(stream, "forge", "-", "+", 10)
        assert pending["consumer"] == b"doomed"

        survivor = Collector()
        publisher.subscribe(topics.COMPILATION_REQUEST, survivor, group="forge", consumer="survivor")
        [d] = await survivor.wait_for(1)
        assert d.message_id == "job-1" and d.delivery_count == 2
        await asyncio.sleep(3 * settings.bus.claim_idle_ms / 1000)
        assert len(survivor.deliveries) == 1
        assert redis_server.client().xpending(stream, "forge")["pending"] == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        await publisher.close()
