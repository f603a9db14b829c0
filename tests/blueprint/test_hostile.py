"""The hostile corpus: every file is rejected with its expected code, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tezzeret.blueprint import BlueprintRejected, load_blueprint
from tezzeret.blueprint.errors import CODES

from blueprint_helpers import blueprint, node, tensor

HOSTILE = Path(__file__).parent / "hostile"
EXPECTED: dict[str, dict[str, str]] = json.loads((HOSTILE / "expected.json").read_text())


def test_corpus_is_complete() -> None:
    on_disk = {p.name for p in HOSTILE.iterdir() if p.suffix in (".json", ".bin") and p.name != "expected.json"}
    assert on_disk == set(EXPECTED)
    assert len(EXPECTED) >= 40
    assert {e["code"] for e in EXPECTED.values()} <= CODES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_file_rejected_with_expected_code(name: str) -> None:
    path = HOSTILE / name
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(path)
    assert info.value.code == EXPECTED[name]["code"], str(info.value)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith(".bin")))
def test_hostile_bytes_rejected_the_same_way(name: str) -> None:
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint((HOSTILE / name).read_bytes())
    assert info.value.code == EXPECTED[name]["code"]


def test_rejection_names_node_and_field() -> None:
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(HOSTILE / "negative_out_features.json")
    err = info.value
    assert (err.node, err.field) == ("fc", "nodes[0].attrs.out_features")
    d = err.to_dict()
    assert d["code"] == "BAD_ATTR" and d["node"] == "fc" and "out_features" in str(d["message"])


def test_hundred_thousand_nodes(tmp_path: Path) -> None:
    nodes = [node(f"r{i}", "relu", [f"r{i - 1}" if i else "x"]) for i in range(100_000)]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(blueprint([tensor("x", 8)], nodes, ["r99999"])))
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(path)
    assert info.value.code == "TOO_MANY_NODES"


def test_ten_megabyte_string(tmp_path: Path) -> None:
    doc = blueprint([tensor("x", 8)], [node("r", "relu", ["x"])], ["r"], description="A" * (10 * 1024 * 1024))
    path = tmp_path / "long.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(path)
    assert info.value.code == "STRING_TOO_LONG"
    assert info.value.field == "metadata.description"


def test_ten_megabyte_string_with_escapes_and_brackets(tmp_path: Path) -> None:
    # Brackets and escaped quotes inside a string must not count as nesting.
    doc = blueprint([tensor("x", 8)], [node("r", "relu", ["x"])], ["r"], description='[{\\"' * (2 * 1024 * 1024))
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(json.dumps(doc))
    assert info.value.code == "STRING_TOO_LONG"


def test_oversized_json_refused_before_parsing() -> None:
    data = b'{"nodes": [' + b"1," * (9 * 1024 * 1024) + b"1]}"
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(data)
    assert info.value.code == "TOO_LARGE"


def test_missing_file() -> None:
    with pytest.raises(BlueprintRejected) as info:
        load_blueprint(HOSTILE / "does-not-exist.json")
    assert info.value.code == "MALFORMED"
