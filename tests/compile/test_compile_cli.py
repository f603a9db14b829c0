"""`tezzeret compile` and `tezzeret inspect` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner
from tz_compile_support import TINY_MLP

from tezzeret.cli import app


def test_compile_json_then_inspect(tmp_path: Path) -> None:
    src = tmp_path / "mlp.json"
    src.write_text(json.dumps(TINY_MLP))
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(src), "--strategy", "emergency", "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["strategy"] == "emergency" and doc["compile_ms"] > 0
    assert Path(doc["path"]).exists() and doc["artifact_id"] in doc["path"]
    assert doc["entries"] == [
        {
            "key": "b8-train", "inputs": [{"shape": [8, 32], "dtype": "float32"}], "grad_mode": "train",
            "verified": True, "serve_compiled": False, "speedup_fwd": 1.0, "speedup_train": 1.0,
            "max_abs_error": 0.0,
        }
    ]
    assert doc["blueprint_digest"] and doc["torch_version"] and doc["target"].startswith("cpu-")

    shown = runner.invoke(app, ["inspect", doc["path"], "--json"])
    assert shown.exit_code == 0, shown.output
    again = json.loads(shown.stdout)
    assert again["artifact_id"] == doc["artifact_id"] and again["signed"] is False
    assert again["entries"] == doc["entries"]

    table = runner.invoke(app, ["inspect", doc["path"]], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "b8-train" in table.stdout


def test_cli_errors_are_typed(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "nodes": [{"op": "nope"}]}')
    result = runner.invoke(app, ["compile", str(bad), "-s", "fast", "-o", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"]
    junk = tmp_path / "junk.tzart"
    junk.write_bytes(b"not an artifact at all")
    shown = runner.invoke(app, ["inspect", str(junk), "--json"])
    assert shown.exit_code == 1 and json.loads(shown.stdout)["error"]["code"] == "ARTIFACT_CORRUPT"
    wrong = runner.invoke(app, ["compile", str(bad), "-s", "turbo", "-o", str(tmp_path)])
    assert wrong.exit_code == 2
