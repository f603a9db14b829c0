"""Small builders shared by the blueprint tests (plain dicts in the JSON form of BlueprintIR)."""

from __future__ import annotations

import json

from tezzeret.leyline import from_json, pb

BATCH = {"symbol": "batch", "min": 1, "max": 64, "size": 8}


def node(name: str, op: str, inputs: list[str], **attrs: object) -> dict:
    out: dict = {"name": name, "op": op, "inputs": list(inputs)}
    items = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            items.append({"key": k, "b": v})
        elif isinstance(v, int):
            items.append({"key": k, "i": v})
        elif isinstance(v, float):
            items.append({"key": k, "f": v})
        elif isinstance(v, str):
            items.append({"key": k, "s": v})
        elif any(isinstance(x, float) for x in v):  # type: ignore[attr-defined]
            items.append({"key": k, "floats": {"values": list(v)}})  # type: ignore[call-overload]
        else:
            items.append({"key": k, "ints": {"values": list(v)}})  # type: ignore[call-overload]
    if items:
        out["attrs"] = items
    return out


def tensor(name: str, *dims: int, dtype: str = "DTYPE_FLOAT32", batch: dict | None = BATCH) -> dict:
    lead = [dict(batch)] if batch is not None else []
    return {"name": name, "dtype": dtype, "dims": lead + [{"size": d} for d in dims]}


def blueprint(inputs: list[dict], nodes: list[dict], outputs: list[str], seed: int = 1, **meta: object) -> dict:
    return {
        "schema_version": 1,
        "inputs": inputs,
        "nodes": nodes,
        "outputs": outputs,
        "metadata": {"name": "test", "category": "test", "tier": "TIER_SAFE", "init_seed": str(seed), **meta},
    }


def to_ir(doc: dict) -> pb.BlueprintIR:
    return from_json(pb.BlueprintIR, json.dumps(doc))
