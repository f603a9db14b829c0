"""A full disk never blinds the service: health and reads keep answering (never 500), health names
the disk, audit records of the period are held and written once space returns."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from serverproc import ADMIN_TOKEN, ServerProcess, write_config
from servers import free_port

from tezzeret.blueprint import library
from tezzeret.forge.audit import read_audit
from tezzeret.leyline import to_json

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):  # down to the last byte
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def test_health_and_reads_survive_a_full_disk_and_the_audit_catches_up(small_disk: Path, tmp_path: Path) -> None:
    port = free_port()
    state = small_disk / "state"
    config = write_config(tmp_path / "tezzeret.yaml", state, port,
                          memory_management={"cleanup_interval_seconds": 1},
                          resources={"min_free_disk_mb": 32})
    server = ServerProcess(config, port, tmp_path / "serve.log").start()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
            filler = _fill(small_disk)
            seen: list[dict] = []
            for _ in range(30):  # the monitor looks at the disk every few seconds
                resp = c.get("/health/tezzeret")
                assert resp.status_code in (200, 503), resp.text
                seen.append(resp.json())
                if seen[-1]["disk"].get("full"):
                    break
                time.sleep(0.5)
            report = seen[-1]
            assert report["disk"]["full"] and any(d["code"] == "disk-full" for d in report["details"]), report["reasons"]
            for path in ("/v1/jobs", "/health/tezzeret", "/v1/artifacts", "/metrics"):
                assert c.get(path).status_code != 500, path  # health may say 503: that is its verdict
            sub = c.post("/v1/blueprints?strategy=EMERGENCY", content=to_json(library()[0].ir),
                         headers={"Content-Type": "application/json"})
            assert sub.status_code in (202, 503), sub.text  # accepted (space preallocated), or refused cleanly
            audit = c.get("/health/tezzeret").json()["audit"]
            for _ in range(20):  # enough requests to need a new page of the audit file
                audit = c.get("/health/tezzeret").json()["audit"]
                if audit["failing"]:
                    break
            assert audit["failing"] and audit["spooled"] > 0 and "space" in (audit["last_error"] or ""), audit
            filler.unlink()
            for _ in range(40):
                audit = c.get("/health/tezzeret").json()["audit"]
                if not audit["failing"]:
                    break
                time.sleep(0.5)
            assert not audit["failing"]
    finally:
        server.terminate()
    actions = [r["action"] for r in read_audit(state / "audit.jsonl")]
    assert actions.count("health") >= 5, "the requests answered while the disk was full are in the audit log"
