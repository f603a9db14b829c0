"""A real `tezzeret serve` process on a free loopback port with its own state dir, for HTTP tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from servers import free_port
from settings import QUIET_FORGE, settings_doc

from tezzeret.api.auth import token_sha256

ADMIN_TOKEN = "admin-token-for-tests"
EMERGENCY_TOKEN = "emergency-token-for-tests"
SUBMIT_TOKEN = "submit-token-for-tests"


def write_config(path: Path, state_dir: Path, port: int, **extra: Any) -> Path:
    """A `tezzeret serve` config on `port` with the three test tokens, over the quiet-forge preset
    (polling is tested in process, not here); `extra` merges over it section by section."""
    served: dict[str, Any] = {
        # The seed's 65 s FAST budget is for a dedicated machine; tests share 2 busy cores.
        "timeouts_ms": {"fast_compilation": 400_000},
        "api": {
            "host": "127.0.0.1",
            "port": port,
            "max_body_bytes": 256 * 1024,
            # Bursts of hundreds of submissions from one address are what some tests are about;
            # the per-client limit itself is tested in test_api_limits.py.
            "rate_limit_burst": 100_000,
            "tokens": [
                {"name": "ops", "sha256": token_sha256(ADMIN_TOKEN), "roles": ["admin", "submit"]},
                {"name": "tamiyo", "sha256": token_sha256(EMERGENCY_TOKEN), "roles": ["emergency"]},
                {"name": "karn", "sha256": token_sha256(SUBMIT_TOKEN), "roles": ["submit"]},
            ],
        },
    }
    doc = settings_doc(state_dir, QUIET_FORGE, served, **extra)
    path.write_text(yaml.safe_dump({"tezzeret": doc}))
    return path


class ServerProcess:
    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        env = dict(os.environ)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tezzeret.cli", "serve", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tezzeret serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health/tezzeret", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"tezzeret serve did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._cleanup()

    def kill(self) -> None:
        """SIGKILL the service and its whole process group (sandbox workers die with it)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        # Workers die with their parent; sweep the group anyway so a test never leaks one.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None  # type: ignore[assignment]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@contextmanager
def serving(root: Path, **config: Any) -> Iterator[ServerProcess]:
    """A `tezzeret serve` on a free port with its config, state and log under `root` (`config` as
    for `write_config`), terminated on exit if still running."""
    port = free_port()
    proc = ServerProcess(write_config(root / "tezzeret.yaml", root / "state", port, **config), port,
                         root / "serve.log").start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in ("SUCCEEDED", "FAILED", "FROM_CACHE"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not finished after {timeout} s")
