"""Payback through a real `tezzeret serve`: the job view and `tezzeret job` carry the predicted
compile time, once from the tier's prior and, after real compiles of other blueprints, from
their recorded history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from serverproc import ServerProcess, serving, wait_job

from tezzeret.blueprint import library
from tezzeret.leyline import to_json

pytestmark = pytest.mark.timeout(600)

MIN_HISTORY = 3
NAMES = ("mlp_512", "lora_adapter_1024", "residual_mlp_256", "swiglu_mlp_512")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("serve-payback"), payback={"min_history": MIN_HISTORY}) as proc:
        yield proc


def _ir(name: str) -> dict:
    return json.loads(to_json(next(lb.ir for lb in library() if lb.name == name)))


def test_the_job_view_and_the_cli_show_the_prediction_from_the_prior_then_from_history(
    server: ServerProcess, client: httpx.Client
) -> None:
    views = []
    for name in NAMES:
        resp = client.post("/v1/blueprints", json={"blueprint": _ir(name)}, params={"strategy": "EMERGENCY"})
        assert resp.status_code in (200, 202), resp.text
        views.append(client.get(f"/v1/jobs/{resp.json()['job_id']}").json())
        assert wait_job(client, views[-1]["job_id"])["status"] == "SUCCEEDED"
    first, last = views[0]["prediction"], views[-1]["prediction"]
    assert first["basis"] == "prior" and first["history"] == 0 and first["strategy"] == "EMERGENCY"
    # The fourth saw the three compiled before it, each measured by a real sandbox worker.
    assert last["basis"] == "history" and last["history"] == MIN_HISTORY
    assert {n["name"] for n in last["neighbours"]} == set(NAMES[:MIN_HISTORY])
    assert all(n["compile_s"] > 0 for n in last["neighbours"]) and last["compile_s"] > 0
    done = client.get(f"/v1/jobs/{views[-1]['job_id']}").json()
    assert "eta_at" not in done and done["prediction"] == last

    cli = [sys.executable, "-m", "tezzeret.cli", "job", views[-1]["job_id"], "--url", server.url]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["prediction"]["compile_s"] == last["compile_s"]
    table = subprocess.run(cli, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "predicted compile" in table.stdout and "history, 3 attempts" in table.stdout
    missing = subprocess.run([*cli[:4], "job-nope", "--url", server.url], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
