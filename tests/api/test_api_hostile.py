"""Hostile and malformed requests against a real `tezzeret serve`: each gets a 4xx with a clear
JSON error, is audited, and changes nothing (no job, no blueprint, no journal entry)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from serverproc import ADMIN_TOKEN, EMERGENCY_TOKEN, SUBMIT_TOKEN

from tezzeret.blueprint import library
from tezzeret.forge.audit import read_audit
from tezzeret.leyline import encode, pb, to_json

pytestmark = pytest.mark.timeout(300)


def ir_json(name: str = "mlp_512") -> dict:
    for lb in library():
        if lb.name == name:
            return json.loads(to_json(lb.ir))
    raise KeyError(name)


def counts(client: httpx.Client) -> tuple[int, dict]:
    health = client.get("/health/tezzeret").json()
    return len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]), health["store"]["blueprints"]


def test_health_metrics_openapi(client: httpx.Client) -> None:
    h = client.get("/health/tezzeret")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] in ("HEALTHY", "DEGRADED")
    assert set(body["breakers"]) >= {"compilation_timeout", "kernel_validation", "store", "bus", "gpu_memory"}
    assert body["isolation_level"] in ("bwrap", "unshare", "subprocess")
    assert body["last_recovery"]["wal"]["outcome"] in ("empty", "clean")
    m = client.get("/metrics")
    assert m.status_code == 200 and "tezzeret_queue_depth" in m.text and "tezzeret_compilation_duration_ms" in m.text
    spec = client.get("/openapi.json").json()
    assert "/v1/blueprints" in spec["paths"] and "/health/tezzeret" in spec["paths"]


CASES = [
    # (description, method, path, kwargs, status, code)
    ("bad json", "POST", "/v1/blueprints", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "REQUEST_INVALID"),
    ("json array", "POST", "/v1/blueprints", {"json": [1, 2]}, 400, "REQUEST_INVALID"),
    ("unknown field", "POST", "/v1/blueprints", {"json": {"blueprint": {"nodez": []}}}, 400, "REQUEST_INVALID"),
    ("wrong content type", "POST", "/v1/blueprints", {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("no content type", "POST", "/v1/blueprints", {"content": b"{}"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("garbage protobuf", "POST", "/v1/blueprints", {"content": b"\xff\xff\xff\x07", "headers": {"Content-Type": "application/x-protobuf"}}, 400, "REQUEST_INVALID"),
    ("oversize", "POST", "/v1/blueprints", {"content": b"{" + b" " * (300 * 1024) + b"}", "headers": {"Content-Type": "application/json"}}, 413, "BODY_TOO_LARGE"),
    ("no blueprint", "POST", "/v1/blueprints", {"json": {"strategy": "STRATEGY_FAST"}}, 400, "REQUEST_INVALID"),
    ("unknown blueprint id", "POST", "/v1/blueprints", {"json": {"blueprint_id": "0" * 64}}, 404, "BLUEPRINT_NOT_FOUND"),
    ("bad strategy", "POST", "/v1/blueprints?strategy=TURBO", {"json": {"blueprint_id": "x"}}, 400, "REQUEST_INVALID"),
    ("emergency priority", "POST", "/v1/blueprints?priority=EMERGENCY", {"json": {"blueprint_id": "x"}}, 400, "REQUEST_INVALID"),
    ("admin without token", "POST", "/v1/admin/drain", {}, 401, "AUTH_REQUIRED"),
    ("admin wrong token", "POST", "/v1/admin/drain", {"headers": {"Authorization": "Bearer nope"}}, 401, "AUTH_REQUIRED"),
    ("admin wrong role", "POST", "/v1/admin/drain", {"headers": {"Authorization": f"Bearer {SUBMIT_TOKEN}"}}, 403, "FORBIDDEN"),
    ("emergency without token", "POST", "/v1/emergency", {"json": {"request_id": "e"}}, 401, "AUTH_REQUIRED"),
    ("emergency admin token", "POST", "/v1/emergency", {"json": {"request_id": "e"}, "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}, 403, "FORBIDDEN"),
    ("unknown job", "GET", "/v1/jobs/job-nope", {}, 404, "JOB_NOT_FOUND"),
    ("unknown artifact", "GET", "/v1/artifacts/nope", {}, 404, "ARTIFACT_NOT_FOUND"),
    ("unknown download", "GET", "/v1/artifacts/nope/download", {}, 404, "ARTIFACT_NOT_FOUND"),
    ("unknown route", "GET", "/v2/anything", {}, 404, "NOT_FOUND"),
    ("wrong method", "DELETE", "/v1/blueprints", {}, 405, "METHOD_NOT_ALLOWED"),
    ("conservative off", "POST", "/v1/admin/conservative-mode", {"json": {"active": False}, "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}, 400, "REQUEST_INVALID"),
    ("conservative bad body", "POST", "/v1/admin/conservative-mode", {"json": {"active": "yes"}, "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}, 400, "REQUEST_INVALID"),
]


@pytest.mark.parametrize(("what", "method", "path", "kwargs", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_hostile_request(client: httpx.Client, what: str, method: str, path: str, kwargs: dict, status: int, code: str) -> None:
    before = counts(client)
    resp = client.request(method, path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code and len(body["message"]) > 10, body
    assert counts(client) == before, f"{what} changed the forge's state"


def test_invalid_ir_points_at_node(client: httpx.Client) -> None:
    before = counts(client)
    ir = ir_json()
    ir["nodes"][0]["op"] = "os.system"
    resp = client.post("/v1/blueprints", json={"blueprint": ir})
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "BLUEPRINT_INVALID" and body["reason"] == "UNKNOWN_OP"
    assert body.get("node") or body.get("field")
    assert counts(client) == before


def test_protobuf_body_and_audit(client: httpx.Client, state_dir: Path) -> None:
    for lb in library():
        if lb.name == "mlp_512":
            req = pb.CompilationRequest(blueprint=lb.ir, strategy=pb.STRATEGY_EMERGENCY)
    resp = client.post("/v1/blueprints", content=encode(req), headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {SUBMIT_TOKEN}"})
    assert resp.status_code in (200, 202), resp.text
    job_id = resp.json()["job_id"]
    # The audit line is appended as the response goes out: give the writer a moment.
    deadline = time.monotonic() + 10
    while True:
        records = read_audit(state_dir / "audit.jsonl")
        mine = [r for r in records if r["action"] == "submit" and r["outcome"] in ("200", "202")
                and r.get("blueprint") == resp.json()["blueprint_digest"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine and mine[-1]["requestor"] == "karn" and mine[-1]["blueprint"] == resp.json()["blueprint_digest"]
    assert [r for r in records if r["outcome"] in ("401", "403")], "refusals are audited"
    text = (state_dir / "audit.jsonl").read_text()
    assert ADMIN_TOKEN not in text and SUBMIT_TOKEN not in text and EMERGENCY_TOKEN not in text
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_a_target_no_compile_worker_builds_is_refused_naming_the_ones_it_has(client: httpx.Client) -> None:
    r = client.post("/v1/blueprints", json={"blueprint": ir_json("mlp_512")}, params={"target": "cuda-sm90"})
    assert r.status_code == 400 and r.json()["code"] == "REQUEST_INVALID", r.text
    assert "target_hardware='cuda-sm90'" in r.json()["message"] and "builds for cpu-" in r.json()["message"]


def test_admin_routes_last(client: httpx.Client, state_dir: Path) -> None:
    """Last in this module: conservative mode and draining change the server for good."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    bad = client.post("/v1/admin/conservative-mode", json={"active": True, "reason": "because"}, headers=admin)
    assert bad.status_code == 400 and "compilation_timeout" in bad.json()["message"]
    on = client.post("/v1/admin/conservative-mode", json={"active": True, "reason": "memory_pressure"}, headers=admin)
    assert on.status_code == 200 and on.json()["active"] is True
    health = client.get("/health/tezzeret").json()
    assert health["conservative_mode"]["active"] and health["max_concurrent_jobs"] == 1
    # Conservative mode caps an explicit STANDARD request one tier down.
    r = client.post("/v1/blueprints", json={"blueprint": ir_json("conv_pool_head_32")}, params={"strategy": "STANDARD"})
    assert r.status_code == 202 and r.json()["strategy"] == "FAST"
    drained = client.post("/v1/admin/drain", headers=admin)
    assert drained.status_code == 200 and drained.json()["draining"] is True
    refused = client.post("/v1/blueprints", json={"blueprint": ir_json("mlp_512")}, params={"strategy": "EMERGENCY"})
    assert refused.status_code == 503 and refused.json()["code"] == "INTAKE_CLOSED"
    actions = {r["action"]: r for r in read_audit(state_dir / "audit.jsonl") if r["requestor"] == "ops"}
    assert actions["admin_drain"]["outcome"] == "200" and actions["admin_conservative_mode"]["outcome"] == "200"
