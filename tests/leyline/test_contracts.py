"""The Leyline contracts: proto2, package leyline, no maps, schema_version, canonical round trips."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tezzeret.leyline import ContractError, decode, encode, from_json, pb, roundtrip_equal, to_json

PROTO_DIR = Path(__file__).resolve().parents[2] / "src" / "tezzeret" / "leyline"
PROTO = PROTO_DIR / "proto" / "leyline.proto"

# Messages that travel on their own (files, bus, HTTP, WAL); each carries schema_version.
TOP_LEVEL = [
    "BlueprintIR",
    "CompilationRequest",
    "CompilationResult",
    "CompiledKernelArtifact",
    "EmergencyCompile",
    "EmergencyAck",
    "CompilationComplete",
    "KernelCatalogUpdate",
    "KernelCharacterized",
    "BlueprintSubmitted",
    "BusEnvelope",
    "ExecutionContext",
    "JobRecord",
    "WorkerJob",
    "WorkerResult",
    "ArtifactSignature",
]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Regenerate from the .proto and compare: a stale leyline_pb2.py fails here."""
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}",
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", str(PROTO),
        ],
        check=True,
    )
    for name in ("leyline_pb2.py", "leyline_pb2.pyi"):
        assert (tmp_path / name).read_text() == (PROTO_DIR / name).read_text(), (
            f"{name} is stale: run `make proto` and commit the result"
        )


def test_proto_rules() -> None:
    text = PROTO.read_text()
    code = re.sub(r"//.*", "", text)
    assert re.search(r'^syntax\s*=\s*"proto2";', code, re.M)
    assert re.search(r"^package\s+leyline;", code, re.M)
    assert "map<" not in code
    assert not re.search(r"\brequired\b", code)


def test_every_field_optional_or_repeated_and_no_maps() -> None:
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            assert not field.is_required, f"{message.name}.{field.name} is required"
            if field.message_type is not None:
                assert not field.message_type.GetOptions().map_entry, f"{message.name}.{field.name}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_messages_carry_schema_version(name: str) -> None:
    fields = pb.DESCRIPTOR.message_types_by_name[name].fields_by_name
    assert "schema_version" in fields


def test_enums_hold_the_design_vocabulary() -> None:
    assert [v.name for v in pb.CompilationStrategy.DESCRIPTOR.values][1:] == [
        "STRATEGY_EMERGENCY", "STRATEGY_FAST", "STRATEGY_STANDARD", "STRATEGY_AGGRESSIVE",
    ]
    assert [v.name for v in pb.CompilationPriority.DESCRIPTOR.values][1:] == [
        "PRIORITY_EMERGENCY", "PRIORITY_STRATEGIC", "PRIORITY_NORMAL",
        "PRIORITY_EXPERIMENTAL", "PRIORITY_BACKGROUND",
    ]


def _sample_request() -> pb.CompilationRequest:
    request = pb.CompilationRequest(
        schema_version=1, request_id="r-1", strategy=pb.STRATEGY_FAST, priority=pb.PRIORITY_NORMAL
    )
    ir = request.blueprint
    ir.schema_version = 1
    spec = ir.inputs.add(name="x", dtype=pb.DTYPE_FLOAT32)
    spec.dims.add(symbol="batch", min=1, max=64, size=8)
    spec.dims.add(size=256)
    node = ir.nodes.add(name="fc", op="linear", inputs=["x"])
    node.attrs.add(key="out_features", i=512)
    node.attrs.add(key="scale", f=0.5)
    ir.outputs.append("fc")
    ir.metadata.extra.add(key="k", value="v")
    return request


def test_encoding_is_deterministic_and_round_trips() -> None:
    request = _sample_request()
    data = encode(request)
    assert encode(decode(pb.CompilationRequest, data)) == data
    assert roundtrip_equal(request)
    assert decode(pb.CompilationRequest, data) == request


def test_non_canonical_bytes_are_refused() -> None:
    data = encode(_sample_request())
    # A field repeated at the end parses (last one wins) but does not re-encode to the same bytes.
    duplicated = data + encode(pb.CompilationRequest(request_id="r-2"))
    with pytest.raises(ContractError, match="re-encode"):
        decode(pb.CompilationRequest, duplicated)
    # An unknown field number.
    with pytest.raises(ContractError):
        decode(pb.CompilationRequest, data + b"\xf8\x07\x01")
    with pytest.raises(ContractError, match="undecodable"):
        decode(pb.CompilationRequest, data[:-3] + b"\xff\xff\xff")


def test_json_form_round_trips_and_rejects_unknown_fields() -> None:
    request = _sample_request()
    assert from_json(pb.CompilationRequest, to_json(request)) == request
    with pytest.raises(ContractError, match="invalid JSON"):
        from_json(pb.CompilationRequest, '{"request_id": "x", "no_such_field": 1}')
    with pytest.raises(ContractError):
        from_json(pb.CompilationRequest, "{not json")
