"""Helpers for the bus tests: test settings, a sample of each topic, a collecting handler."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

# bus_crash_consumer.py imports this module in a child process, where no conftest put tests/support
# on the path.
_SUPPORT = str(Path(__file__).resolve().parent.parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

from settings import BUS_KEYS, settings_for  # noqa: E402

from tezzeret.bus import topics  # noqa: E402
from tezzeret.config import Settings  # noqa: E402
from tezzeret.leyline import SCHEMA_VERSION, pb  # noqa: E402

# Fast redelivery, so reclaim and dead-letter tests end in seconds, and the tests' three keys.
FAST_BUS = {"bus": {"claim_idle_ms": 150, "max_deliveries": 3, "keys": BUS_KEYS}}


def bus_settings(state_dir: Path, redis_url: str | None, **overrides: Any) -> Settings:
    """Settings with fast redelivery and three keys: the forge's, Tamiyo's and Karn's."""
    return settings_for(state_dir, FAST_BUS, redis_url=redis_url, **overrides)


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
