"""`tezzeret forge`: the library through the full in-process pipeline, as `make run` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def test_forge_command_compiles_and_reports(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "tezzeret.cli", "forge", "--state-dir", str(tmp_path / "state"), "--strategy", "EMERGENCY",
           "--only", "mlp_512", "--only", "depthwise_separable_64"]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["failed"] == 0 and {r["blueprint"] for r in doc["artifacts"]} == {"mlp_512", "depthwise_separable_64"}
    for row in doc["artifacts"]:
        assert row["status"] == "SUCCEEDED" and row["tier"] == "EMERGENCY" and row["size"] > 0
        assert "-emergency-" in row["artifact_id"] and row["compile_s"] is not None
    bad = subprocess.run([*cli[:4], "--state-dir", str(tmp_path / "s2"), "--strategy", "TURBO"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "TURBO" in bad.stderr
