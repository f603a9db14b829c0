"""Helpers for the bus tests: a real redis-server process, test settings, a sample of each topic."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tezzeret.bus import topics
from tezzeret.config import Settings, load_settings
from tezzeret.leyline import SCHEMA_VERSION, pb

TAMIYO_SECRET = "tamiyo-test-secret"
KARN_SECRET = "karn-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process with no persistence; `kill()` and `start()` keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)


def bus_settings(state_dir: Path, redis_url: str | None, **overrides: Any) -> Settings:
    """Settings with fast redelivery and three keys: the forge's, Tamiyo's and Karn's."""
    bus = {
        "claim_idle_ms": 150,
        "max_deliveries": 3,
        "keys": [
            {"key_id": "tezzeret", "secret": "tezzeret-test-secret", "roles": ["publisher", "emergency", "admin"]},
            {"key_id": "tamiyo", "secret": TAMIYO_SECRET, "roles": ["emergency"]},
            {"key_id": "karn", "secret": KARN_SECRET, "roles": ["publisher"]},
        ],
    }
    bus.update(overrides.pop("bus", {}))
    return load_settings(state_dir=state_dir, redis_url=redis_url, bus=bus, **overrides)




def tiny_ir(name: str = "bp-tiny") -> pb.BlueprintIR:
    ir = pb.BlueprintIR(schema_version=SCHEMA_VERSION)
    x = ir.inputs.add(name="x", dtype=pb.DTYPE_FLOAT32)
    x.dims.add(symbol="batch", min=1, max=64)
    x.dims.add(size=16)
    ir.nodes.add(name="relu", op="relu", inputs=["x"])
    ir.outputs.append("relu")
    ir.metadata.blueprint_id = name
    ir.metadata.name = name
    return ir


def sample(topic: str, i: int = 0) -> Any:
    """A representative message for `topic`, distinct per `i`."""
    v = SCHEMA_VERSION
    if topic == topics.BLUEPRINT_SUBMITTED:
        return pb.BlueprintSubmitted(schema_version=v, blueprint_id=f"bp-{i}", blueprint=tiny_ir(f"bp-{i}"),
                                     priority=pb.PRIORITY_NORMAL)
    if topic == topics.COMPILATION_REQUEST:
        return pb.CompilationRequest(schema_version=v, request_id=f"req-{i}", blueprint=tiny_ir(f"bp-{i}"),
                                     strategy=pb.STRATEGY_FAST, priority=pb.PRIORITY_STRATEGIC, timeout_ms=65000)
    if topic == topics.KERNEL_CHARACTERIZED:
        return pb.KernelCharacterized(schema_version=v, artifact_id=f"art-{i}", blueprint_id=f"bp-{i}",
                                      status=pb.KERNEL_VALIDATED, latency_p50_ms=1.5, latency_p95_ms=2.5)
    if topic in (topics.KERNEL_READY, topics.EMERGENCY_REPLY):
        return pb.CompilationComplete(schema_version=v, request_id=f"req-{i}", blueprint_id=f"bp-{i}",
                                      artifact_id=f"art-{i}", strategy=pb.STRATEGY_STANDARD,
                                      status=pb.OUTCOME_SUCCESS, compilation_time_ms=1234.5, sha256="ab" * 32)
    if topic == topics.KERNELS_CATALOG:
        return pb.KernelCatalogUpdate(schema_version=v, blueprint_id=f"bp-{i}", artifact_id=f"art-{i}",
                                      checksum="cd" * 32, strategy=pb.STRATEGY_FAST,
                                      status=pb.KERNEL_PENDING_BENCHMARKING)
    if topic == topics.EMERGENCY:
        return pb.EmergencyCompile(schema_version=v, request_id=f"em-{i}", blueprint=tiny_ir(f"bp-{i}"),
                                   requested_by="tamiyo", issued_at_ns=time.time_ns(), nonce=f"n-{i}")
    raise KeyError(topic)


class Collector:
    """A handler that records deliveries and lets a test wait for a count."""

    def __init__(self) -> None:
        import asyncio

        self.deliveries: list[Any] = []
        self._changed = asyncio.Event()

    async def __call__(self, delivery: Any) -> None:
        self.deliveries.append(delivery)
        self._changed.set()

    async def wait_for(self, n: int, timeout_s: float = 10.0) -> list[Any]:
        import asyncio

        async def until() -> None:
            while len(self.deliveries) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout_s)
        return self.deliveries
