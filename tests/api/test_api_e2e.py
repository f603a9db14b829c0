"""End to end through a real `tezzeret serve`: submit → wait → manifest → download → load with the
loader → train a step; and a burst of 500 submissions with many duplicates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import psutil
import pytest
from serverproc import ServerProcess, wait_job

from tezzeret.blueprint import library
from tezzeret.leyline import to_json

pytestmark = pytest.mark.timeout(600)


def ir_json(name: str) -> dict:
    for lb in library():
        if lb.name == name:
            return json.loads(to_json(lb.ir))
    raise KeyError(name)


def _load_and_train(path: Path, public_key: bytes, ir: dict) -> None:
    import torch

    from tezzeret.blueprint import example_inputs, parse_blueprint
    from tezzeret.loader import load

    # Signature required, no eager fallback: the step must run on the artifact's compiled entries.
    module = load(path, public_key=public_key, fallback="error")
    params = [p for p in module.parameters() if p.requires_grad]
    assert params, "the loaded module has trainable parameters"
    opt = torch.optim.SGD(params, lr=1e-3)
    before = [p.detach().clone() for p in params]
    args = example_inputs(parse_blueprint(json.dumps(ir)))
    out = module(*args)
    out = out[0] if isinstance(out, (tuple, list)) else out
    loss = out.float().pow(2).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert module.calls_compiled + module.calls_eager == 1
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params)), "a training step changed the weights"


@pytest.mark.parametrize("strategy", ["EMERGENCY", pytest.param("FAST", marks=pytest.mark.slow)])
def test_submit_wait_download_load_train(client: httpx.Client, tmp_path: Path, strategy: str) -> None:
    name = "residual_mlp_256"
    ir = ir_json(name)
    # One batch size keeps the FAST (Inductor) case to one training entry on a small machine.
    body = {"blueprint": ir, "options": {"batch_sizes": [8]}}
    resp = client.post("/v1/blueprints", json=body, params={"strategy": strategy})
    assert resp.status_code in (200, 202), resp.text
    sub = resp.json()
    job = wait_job(client, sub["job_id"], timeout=400)
    assert job["status"] in ("SUCCEEDED", "FROM_CACHE"), (job["error_code"], job["error"], job.get("result", {}).get("stderr_tail"))
    artifact_id = sub["artifact_id"]
    manifest = client.get(f"/v1/artifacts/{artifact_id}").json()
    assert manifest["artifact_id"] == artifact_id and manifest["strategy"] == f"STRATEGY_{strategy}"
    listed = client.get("/v1/artifacts", params={"blueprint_id": sub["blueprint_digest"]}).json()["artifacts"]
    assert artifact_id in [a["artifact_id"] for a in listed]
    data = client.get(f"/v1/artifacts/{artifact_id}/download")
    assert data.status_code == 200 and len(data.content) > 0
    path = tmp_path / f"{artifact_id}.tzk"
    path.write_bytes(data.content)
    public_key = bytes.fromhex(client.get("/v1/keys/public").json()["public_key_hex"])
    _load_and_train(path, public_key, ir)


async def _burst(url: str, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as ac:
        sem = asyncio.Semaphore(32)

        async def one(body: dict) -> httpx.Response:
            async with sem:
                return await ac.post("/v1/blueprints", json=body, params={"strategy": "EMERGENCY"})

        return await asyncio.gather(*(one(b) for b in bodies))


def test_burst_of_500_with_duplicates(server: ServerProcess, client: httpx.Client) -> None:
    names = ["swiglu_mlp_512", "lora_adapter_1024", "rmsnorm_gated_mlp_768", "embedding_bag_pool_256", "mlp_512"]
    irs = [ir_json(n) for n in names]
    proc = psutil.Process(server.pid)
    rss_before = proc.memory_info().rss
    bodies = [{"blueprint": irs[i % len(irs)]} for i in range(500)]
    responses = asyncio.run(_burst(server.url, bodies))
    assert all(r.status_code in (200, 202) for r in responses), {r.status_code for r in responses}
    subs = [r.json() for r in responses]
    by_artifact: dict[str, set[str]] = {}
    for s in subs:
        if not s["from_cache"]:
            by_artifact.setdefault(s["artifact_id"], set()).add(s["job_id"])
    # Each unique artifact has at most one compiling job (joiners share its id).
    assert all(len(jobs) == 1 for jobs in by_artifact.values()), by_artifact
    for jobs in by_artifact.values():
        job = wait_job(client, next(iter(jobs)), timeout=300)
        assert job["status"] == "SUCCEEDED", job
    artifacts = {s["artifact_id"] for s in subs}
    assert len(artifacts) == len(names)
    # Compiled once each: across every job the forge knows, one non-cached job per artifact.
    jobs = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    compiled = [j for j in jobs if j["artifact_id"] in artifacts and j["status"] != "FROM_CACHE"]
    assert sorted(j["artifact_id"] for j in compiled) == sorted(artifacts), compiled
    rss_after = proc.memory_info().rss
    assert rss_after - rss_before < 200 * 2**20, f"RSS grew {(rss_after - rss_before) / 2**20:.0f} MiB"


def test_http_emergency_and_cli(server: ServerProcess, client: httpx.Client, tmp_path: Path) -> None:
    import subprocess
    import sys

    from serverproc import EMERGENCY_TOKEN

    body = {"request_id": "http-em-1", "blueprint": ir_json("temporal_conv1d_128")}
    resp = client.post("/v1/emergency", json=body, headers={"Authorization": f"Bearer {EMERGENCY_TOKEN}"})
    assert resp.status_code == 202, resp.text
    ack = resp.json()
    assert ack["accepted"] is True and ack["request_id"] == "http-em-1"
    jobs = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    (job,) = [j for j in jobs if j["request_id"] == "http-em-1"]
    assert job["priority"] == "EMERGENCY" and job["strategy"] == "EMERGENCY"
    assert wait_job(client, job["job_id"])["status"] == "SUCCEEDED"

    # The CLI against the same server: submit --wait, status, artifacts (all --json).
    f = tmp_path / "bp.json"
    f.write_text(json.dumps(ir_json("conv_pool_head_32")))
    cli = [sys.executable, "-m", "tezzeret.cli"]
    out = subprocess.run([*cli, "submit", str(f), "--strategy", "EMERGENCY", "--wait", "--json", "--url", server.url],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (sub,) = json.loads(out.stdout)["submissions"]
    assert sub["final"]["status"] in ("SUCCEEDED", "FROM_CACHE") if "final" in sub else sub["from_cache"]
    out = subprocess.run([*cli, "status", "--json", "--url", server.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["health"]["status"] in ("HEALTHY", "DEGRADED")
    out = subprocess.run([*cli, "artifacts", "--json", "--url", server.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sub["artifact_id"] in {a["artifact_id"] for a in json.loads(out.stdout)["artifacts"]}
    bad = subprocess.run([*cli, "submit", str(tmp_path / "missing.json"), "--url", server.url], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
