"""Helpers for the forge tests: settings on a tmp state dir, small library blueprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from settings import QUIET_FORGE, settings_for

from tezzeret.blueprint import library
from tezzeret.config import Settings
from tezzeret.leyline import SCHEMA_VERSION, pb

# The cheapest library blueprints to compile on a 2-core machine.
SMALL = ("mlp_512", "residual_mlp_256", "swiglu_mlp_512", "lora_adapter_1024", "rmsnorm_gated_mlp_768")


def forge_settings(state_dir: Path, **overrides: Any) -> Settings:
    """A quiet forge's settings (one slot, no polling, fsync'd journal) on `state_dir`."""
    return settings_for(state_dir, QUIET_FORGE, **overrides)


# In-process compiles share the test process and 2 busy cores: the seed's 10 s emergency budget
# is too short for a real compile there.
IN_PROCESS = {"timeouts_ms": {"emergency_compilation": 120_000}}


def in_process_settings(state_dir: Path, **overrides: Any) -> Settings:
    """`forge_settings` for a forge whose compiles run on the in-process executor."""
    return settings_for(state_dir, QUIET_FORGE, IN_PROCESS, **overrides)


def blueprint(name: str) -> pb.BlueprintIR:
    for lb in library():
        if lb.name == name:
            ir = pb.BlueprintIR()
            ir.CopyFrom(lb.ir)
            return ir
    raise KeyError(name)


def request(name: str, strategy: int = pb.STRATEGY_EMERGENCY, **fields: Any) -> pb.CompilationRequest:
    return pb.CompilationRequest(
        schema_version=SCHEMA_VERSION, blueprint=blueprint(name), strategy=strategy, **fields
    )
