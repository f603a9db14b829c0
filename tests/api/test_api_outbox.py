"""The durable outbox, end to end: a forge whose bus is down when a job ends keeps its events in the
journal; SIGKILLed and restarted (Redis back), it publishes them, once acknowledged never again,
each under the message id consumers drop duplicates by."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from serverproc import ADMIN_TOKEN, ServerProcess, wait_job, write_config
from servers import free_port

from tezzeret.blueprint import library
from tezzeret.bus import topics
from tezzeret.bus.redis_streams import F_ENVELOPE
from tezzeret.config import load_settings
from tezzeret.leyline import decode, pb, to_json

pytestmark = pytest.mark.timeout(600)


def _stream_events(redis_server, settings, topic: str) -> list[pb.BusEnvelope]:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    try:
        entries = client.xrange(topics.stream_name(settings, topic))
    finally:
        client.close()
    return [decode(pb.BusEnvelope, fields[F_ENVELOPE]) for _, fields in entries]


def test_events_of_a_job_the_bus_missed_are_published_after_a_kill(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    config = write_config(tmp_path / "tezzeret.yaml", tmp_path / "state", port, redis_url=redis_server.url)
    settings = load_settings(config)
    server = ServerProcess(config, port, tmp_path / "serve.log").start()
    try:
        redis_server.kill()  # Oona goes away; compiling and storing do not need it
        ir = library()[0].ir
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as c:
            sub = c.post("/v1/blueprints?strategy=EMERGENCY", content=to_json(ir),
                         headers={"Content-Type": "application/json"}).json()
            job = wait_job(c, sub["job_id"])
            assert job["status"] == "SUCCEEDED", job
            pending = 0.0
            for _ in range(50):
                for line in c.get("/metrics").text.splitlines():
                    if line.startswith("tezzeret_outbox_pending "):
                        pending = float(line.split()[1])
                if pending:
                    break
                time.sleep(0.2)
            assert pending >= 2, "kernel.ready and kernels.catalog wait in the outbox"
    finally:
        server.kill()  # SIGKILL: nothing gets to flush anything
    redis_server.start()
    assert _stream_events(redis_server, settings, topics.KERNEL_READY) == []
    server = ServerProcess(config, port, tmp_path / "serve2.log").start()
    try:
        ready: list[pb.BusEnvelope] = []
        for _ in range(150):
            ready = _stream_events(redis_server, settings, topics.KERNEL_READY)
            if ready:
                break
            time.sleep(0.2)
        assert [e.message_id for e in ready] == [f"ready:{job['artifact_id']}:{job['request_id']}"]
        complete = decode(pb.CompilationComplete, ready[0].payload)
        assert complete.artifact_id == job["artifact_id"] and complete.status == pb.OUTCOME_SUCCESS
        assert complete.event_id == ready[0].message_id
        catalog = _stream_events(redis_server, settings, topics.KERNELS_CATALOG)
        assert [e.message_id for e in catalog] == [f"catalog:{job['artifact_id']}"]
    finally:
        server.terminate()
    # Acknowledged: a third start publishes nothing again.
    server = ServerProcess(config, port, tmp_path / "serve3.log").start()
    try:
        time.sleep(3)
        assert len(_stream_events(redis_server, settings, topics.KERNEL_READY)) == 1
    finally:
        server.terminate()
