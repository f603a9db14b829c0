"""Helpers of the operability tests: compiling library blueprints on a forge over HTTP, and a real
Prometheus (Debian's `prometheus`) on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from serverproc import wait_job  # noqa: E402
from servers import free_port  # noqa: E402

from tezzeret.blueprint import library  # noqa: E402
from tezzeret.leyline import to_json  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (make system-deps installs it as root)")
    return path


def submit(client: httpx.Client, names: list[str], strategy: str = "EMERGENCY") -> list[str]:
    """Submit library blueprints by name; returns their job ids."""
    by_name = {lb.name: lb for lb in library()}
    ids = []
    for name in names:
        body = {"blueprint": json.loads(to_json(by_name[name].ir))}
        resp = client.post("/v1/blueprints", json=body, params={"strategy": strategy})
        assert resp.status_code in (200, 202), resp.text
        ids.append(resp.json()["job_id"])
    return ids


def finish(client: httpx.Client, job_ids: list[str], timeout: float = 180.0) -> list[dict]:
    jobs = [wait_job(client, j, timeout) for j in job_ids]
    for job in jobs:
        assert job["status"] in ("SUCCEEDED", "FROM_CACHE"), (job["error_code"], job["error"])
    return jobs


class Prometheus:
    """A real Prometheus on a free loopback port, scraping `targets` every second."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "tezzeret", "static_configs": [{"targets": targets}]}],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "Prometheus":
        self._log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [need("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus did not become ready in {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]

    def query(self, expr: str) -> dict:
        """The API's answer to an instant query (status, data or error), whatever the HTTP status."""
        return httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
