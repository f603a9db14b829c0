"""`tezzeret validate`, `tezzeret blueprints`, `tezzeret digest` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tezzeret.blueprint import digest, library_blueprint
from tezzeret.blueprint.library import LIBRARY_DIR
from tezzeret.cli import app

RUNNER = CliRunner()
HOSTILE = Path(__file__).parent / "hostile"
MLP = LIBRARY_DIR / "mlp_512.json"


def test_validate_valid_files_exit_zero() -> None:
    result = RUNNER.invoke(app, ["validate", str(MLP), str(LIBRARY_DIR / "moe_top2_256.json"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["valid"] is True and [r["valid"] for r in doc["results"]] == [True, True]
    assert doc["results"][0]["summary"]["digest"] == digest(library_blueprint("mlp_512"))


def test_validate_reports_file_node_field_and_exits_one() -> None:
    bad = HOSTILE / "negative_out_features.json"
    result = RUNNER.invoke(app, ["validate", str(MLP), str(bad), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["valid"] is False
    err = doc["results"][1]["error"]
    assert (err["code"], err["node"], err["field"], err["source"]) == ("BAD_ATTR", "fc", "nodes[0].attrs.out_features", str(bad))


def test_validate_human_table() -> None:
    result = RUNNER.invoke(app, ["validate", str(HOSTILE / "cycle_two_nodes.json")], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "CYCLE" in result.output and "cycle_two_nodes.json" in result.output and "rejected" in result.output


def test_blueprints_json_lists_the_library() -> None:
    result = RUNNER.invoke(app, ["blueprints", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) >= 16
    for row in rows:
        assert {"name", "category", "parameters", "flops", "digest"} <= set(row)
        assert "error" not in row
    names = {r["name"] for r in rows}
    assert "prenorm_transformer_256" in names


def test_blueprints_table() -> None:
    result = RUNNER.invoke(app, ["blueprints"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "mlp_512" in result.output and "[batch, 512]" in result.output


def test_digest_command() -> None:
    result = RUNNER.invoke(app, ["digest", str(MLP)])
    assert result.exit_code == 0
    assert result.output.strip() == digest(library_blueprint("mlp_512"))
    result = RUNNER.invoke(app, ["digest", str(MLP), "--json"])
    assert json.loads(result.output)["digest"] == digest(library_blueprint("mlp_512"))
    result = RUNNER.invoke(app, ["digest", str(HOSTILE / "self_loop.json"), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "CYCLE"


def test_ops_command_lists_the_allowlist() -> None:
    from tezzeret.blueprint import OPS

    result = RUNNER.invoke(app, ["ops", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["op"] for r in rows] == sorted(OPS)
    linear = next(r for r in rows if r["op"] == "linear")
    assert linear["attrs"]["out_features"]["required"] is True
    assert linear["attrs"]["bias"] == {**linear["attrs"]["bias"], "required": False, "default": True}
    assert "cat" in next(r for r in rows if r["op"] == "concat")["aliases"]


def test_ops_json_says_which_bounds_are_exclusive() -> None:
    result = RUNNER.invoke(app, ["ops", "--json"])
    assert result.exit_code == 0
    attrs = {r["op"]: r["attrs"] for r in json.loads(result.output)}
    # dropout p is in [0, 1): 0 allowed, 1 not.
    p = attrs["dropout"]["p"]
    assert (p["min"], p["min_exclusive"], p["max"], p["max_exclusive"]) == (0.0, False, 1.0, True)
    # An attention scale is > 0, a normalisation eps too; upsampling's scale_factor as well.
    for op, key in (("scaled_dot_product_attention", "scale"), ("layer_norm", "eps"), ("upsample", "scale_factor")):
        a = attrs[op][key]
        assert a["min"] == 0.0 and a["min_exclusive"] is True and a["max_exclusive"] is False, (op, key, a)
    # Integer bounds are inclusive, and an absent bound is never exclusive.
    out = attrs["linear"]["out_features"]
    assert (out["min"], out["min_exclusive"], out["max_exclusive"]) == (1, False, False)
    assert attrs["gelu"]["approximate"]["min"] is None and attrs["gelu"]["approximate"]["min_exclusive"] is False
    # The flags say what validation enforces: an exclusive bound itself is refused, an inclusive one accepted.
    from tezzeret.blueprint import BlueprintRejected, validate
    from tezzeret.leyline import from_json, pb

    def valid(op: str, key: str, value: float) -> bool:
        doc = {"schema_version": 1, "inputs": [{"name": "x", "dtype": "DTYPE_FLOAT32", "dims": [{"size": 2}, {"size": 4}]}],
               "nodes": [{"name": "n", "op": op, "inputs": ["x"], "attrs": [{"key": key, "f": value}]}], "outputs": ["n"],
               "metadata": {"name": "bounds", "init_seed": "1"}}
        try:
            validate(from_json(pb.BlueprintIR, json.dumps(doc)))
        except BlueprintRejected as exc:
            assert exc.field == "nodes[0].attrs." + key, exc
            return False
        return True

    for op, key in (("dropout", "p"), ("layer_norm", "eps"), ("batch_norm", "momentum")):
        a = attrs[op][key]
        assert valid(op, key, a["min"]) is not a["min_exclusive"], (op, key, "min")
        assert valid(op, key, a["max"]) is not a["max_exclusive"], (op, key, "max")


def test_ops_table_shows_open_and_closed_float_bounds() -> None:
    result = RUNNER.invoke(app, ["ops"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "p: float = 0.1 in [0, 1)" in result.output
    assert "scale: float = None in (0, 1000]" in result.output
