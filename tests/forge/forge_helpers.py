"""Helpers for the forge tests: settings on a tmp state dir, small library blueprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tezzeret.blueprint import library
from tezzeret.config import Settings, load_settings
from tezzeret.leyline import SCHEMA_VERSION, pb

# The cheapest library blueprints to compile on a 2-core machine.
SMALL = ("mlp_512", "residual_mlp_256", "swiglu_mlp_512", "lora_adapter_1024", "rmsnorm_gated_mlp_768")


def forge_settings(state_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "state_dir": state_dir,
        "compilation": {"max_concurrent_jobs": 1, "idle_recompilation": False},
        "polling": {"initial_full_scan": False, "refresh_interval_minutes": 0},
        "sandbox": {"grace_period_s": 5.0},
        "wal": {"durability_mode": "fsync"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


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
