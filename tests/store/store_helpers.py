"""Helpers shared by the store tests: a stepping wall clock and real Leyline messages."""

from __future__ import annotations

import hashlib
from typing import Any

from tezzeret.leyline import codec, pb


class StepClock:
    """Wall-clock nanoseconds that advance only when told, so record ages are exact."""

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        self.now += 1  # strictly increasing, so "oldest first" orders are well defined
        return self.now

    def advance_s(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


def make_ir(name: str, *, interest: float = 0.0, tier: Any = pb.TIER_SAFE) -> bytes:
    ir = pb.BlueprintIR(schema_version=1)
    spec = ir.inputs.add(name="x", dtype=pb.DTYPE_FLOAT32)
    spec.dims.add(size=8)
    spec.dims.add(size=16)
    ir.nodes.add(name="act", op="relu", inputs=["x"])
    ir.outputs.append("act")
    ir.metadata.name = name
    ir.metadata.tier = tier
    ir.metadata.tamiyo_interest = interest
    return codec.encode(ir)


def digest_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def make_manifest(digest: str, *, strategy: Any = pb.STRATEGY_FAST, toolchain: str = "tc-0001",
                  target: str = "cpu-x86_64-avx2", note: str = "") -> pb.CompiledKernelArtifact:
    m = pb.CompiledKernelArtifact(schema_version=1)
    m.blueprint_digest = digest
    m.strategy = strategy
    m.target = target
    m.toolchain_hash = toolchain
    m.artifact_id = f"{digest[:16]}-{target}-{pb.CompilationStrategy.Name(strategy)[9:].lower()}-{toolchain[:8]}"
    m.torch_version = "2.13.0"
    if note:
        m.tier_settings = note
    return m
