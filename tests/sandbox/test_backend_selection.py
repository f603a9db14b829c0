"""`make_executor` picks the backend `sandbox.backend` names; the local backend never imports Ray;
and what the forge sends a compile node carries none of its secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tezzeret.config import load_settings
from tezzeret.sandbox import SandboxExecutor, make_executor
from tezzeret.sandbox.ray_node import node_settings


def test_the_local_backend_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from tezzeret.config import load_settings\n"
        "from tezzeret.sandbox import make_executor\n"
        f"e = make_executor(load_settings(state_dir={str(tmp_path)!r}))\n"
        "print(json.dumps([type(e).__name__, 'ray' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["SandboxExecutor", False]


def test_the_ray_backend_is_chosen_by_configuration(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from tezzeret.sandbox.ray_executor import RayExecutor

    assert isinstance(make_executor(load_settings(state_dir=str(tmp_path))), SandboxExecutor)
    executor = make_executor(load_settings(state_dir=str(tmp_path), sandbox={"backend": "ray"}))
    assert isinstance(executor, RayExecutor) and executor.status().backend == "ray"
    assert executor.status().nodes == [] and executor.waiting_reason("nope") is None


def test_a_compile_node_gets_the_pools_settings_and_no_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        state_dir=str(tmp_path), redis_url="redis://:bus-password@bus:6379/0",
        cache={"l3_redis_url": "redis://l3:l3-password@cache:6379/1"},
        bus={"keys": [{"key_id": "tezzeret", "secret": "bus-hmac-secret", "roles": ["publisher"]}]},
        api={"tokens": [{"name": "ops", "sha256": "a" * 64, "roles": ["admin"]}]},
        sandbox={"backend": "ray", "max_jobs_per_worker": 7},
        resources={"per_job_memory_limits": {"fast": 3000}},
    )
    sent = node_settings(settings)
    assert set(sent) == {"sandbox", "resources", "compilation", "timeouts_ms", "emergency", "cache"}
    text = json.dumps(sent)
    for secret in ("bus-password", "bus-hmac-secret", "a" * 64, str(settings.key_dir), str(settings.wal_dir)):
        assert secret not in text
    assert sent["cache"]["l3_redis_url"] == "redis://l3:l3-password@cache:6379/1"
    # The node builds the same pool: same limits, and always its local backend.
    node = load_settings(**sent, state_dir=str(tmp_path / "node"))
    assert node.sandbox.backend == "local" and node.sandbox.max_jobs_per_worker == 7
    assert node.resources.per_job_memory_limits.fast == 3000 and node.redis_url is None
