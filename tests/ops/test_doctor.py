"""`tezzeret doctor --json` on this machine and on crafted bad hosts: bubblewrap missing from PATH, a
full disk (a 1 MiB tmpfs filled to the last byte), a store holding an artifact built by another
torch, a key directory others can read, and Redis with and without persistence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from servers import RedisServer, free_port, require

from tezzeret.artifact.target import python_version, torch_build
from tezzeret.blueprint import digest, library
from tezzeret.leyline import codec, pb
from tezzeret.store import SigningKey, Store

CHECKS = {
    "torch", "isa", "artifacts", "bubblewrap", "user-namespaces", "cgroups", "state-dir", "disk",
    "filesystem", "fsync", "redis", "ray", "clock", "keys",
}


def doctor(state_dir: Path, *, config: dict | None = None, env: dict[str, str] | None = None) -> tuple[int, dict]:
    argv = [sys.executable, "-m", "tezzeret.cli", "doctor", "--json", "--state-dir", str(state_dir)]
    if config is not None:
        path = state_dir.parent / "doctor.yaml"
        path.write_text(yaml.safe_dump({"tezzeret": config}))
        argv += ["--config", str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    report = json.loads(proc.stdout)
    assert report["exit_code"] == proc.returncode, proc.stderr
    return proc.returncode, report


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_doctor_on_this_machine(tmp_path: Path) -> None:
    code, report = doctor(tmp_path / "state")
    checks = by_name(report)
    assert set(checks) == CHECKS
    for c in report["checks"]:
        assert c["status"] in ("ok", "warn", "error") and c["message"]
        assert c["status"] == "ok" or c["fix"], f"{c['name']} says {c['status']} without a fix"
    worst = max(("ok", "warn", "error").index(c["status"]) for c in report["checks"])
    assert code == worst and report["status"] == ("ok", "warn", "error")[worst]
    assert checks["torch"]["status"] == "ok" and torch_build() in checks["torch"]["message"]
    assert checks["state-dir"]["status"] == "ok" and "does not exist yet" in checks["state-dir"]["message"]
    assert checks["redis"]["status"] == "ok" and "not configured" in checks["redis"]["message"]
    assert not (tmp_path / "state").exists(), "doctor must not create the state dir"
    if shutil.which("bwrap"):
        assert checks["bubblewrap"]["status"] == "ok"


def test_doctor_without_bubblewrap_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code, report = doctor(tmp_path / "state", env={"PATH": str(empty)})
    bwrap = by_name(report)["bubblewrap"]
    assert bwrap["status"] == "warn" and "not installed" in bwrap["message"]
    assert "apt-get install bubblewrap" in bwrap["fix"]
    assert code >= 1
    # Configured to require it, the forge would refuse to start: an error.
    code, report = doctor(tmp_path / "state", config={"sandbox": {"isolation": "bwrap"}}, env={"PATH": str(empty)})
    assert by_name(report)["bubblewrap"]["status"] == "error" and code == 2


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with every byte taken (root only: it mounts a file system)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        (mount_point / "state").mkdir()
        with open(mount_point / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        assert shutil.disk_usage(mount_point).free < 65536
        yield mount_point / "state"
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_doctor_on_a_full_disk(full_disk: Path) -> None:
    code, report = doctor(full_disk)
    checks = by_name(report)
    assert checks["disk"]["status"] == "error" and "free" in checks["disk"]["message"]
    assert checks["fsync"]["status"] == "error" and "No space left" in checks["fsync"]["message"]
    assert checks["filesystem"]["status"] == "warn" and "tmpfs" in checks["filesystem"]["message"]
    assert code == 2


def test_doctor_on_a_store_built_by_another_torch(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lb = library()[0]
    ir = codec.encode(lb.ir)
    key = SigningKey.load_or_create(state / "keys")
    with Store.open(state / "store") as store:
        bp_digest = digest(lb.ir)
        store.put_blueprint(ir, bp_digest, name=lb.name, source="test")
        manifest = pb.CompiledKernelArtifact(
            schema_version=1, blueprint_digest=bp_digest, strategy=pb.STRATEGY_EMERGENCY,
            target="cpu-x86_64-avx2", toolchain_hash="0" * 64, torch_version="2.12.0",
            python_version=python_version(), artifact_id=f"{bp_digest[:16]}-cpu-x86_64-avx2-emergency-00000000",
        )
        artifact = tmp_path / "artifact.tzart"
        artifact.write_bytes(b"artifact bytes")
        store.put_artifact(manifest, artifact, key.sign(codec.encode(manifest)))
    code, report = doctor(state)
    checks = by_name(report)
    assert checks["torch"]["status"] == "error" and "torch 2.12.0" in checks["torch"]["message"]
    assert "pip install torch==2.12.0" in checks["torch"]["fix"]
    assert checks["artifacts"]["status"] == "error" and "built with torch 2.12.0" in checks["artifacts"]["message"]
    assert checks["keys"]["status"] == "ok"
    assert code == 2


def test_doctor_on_a_key_dir_others_can_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    SigningKey.load_or_create(state / "keys")
    private = next((state / "keys").glob("*.pem"))
    os.chmod(state / "keys", 0o755)
    os.chmod(private, 0o644)
    code, report = doctor(state)
    keys = by_name(report)["keys"]
    assert keys["status"] == "error" and "0755" in keys["message"] and "0644" in keys["message"]
    assert f"chmod 700 {state / 'keys'}" in keys["fix"] and f"chmod 600 {private}" in keys["fix"]
    assert code == 2


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts real redis-servers, each in its own dir (AOF files must not meet); returns their URLs."""
    require("redis-server")
    servers: list[RedisServer] = []

    def start(*, appendonly: bool) -> str:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendonly=appendonly)
        servers.append(server)
        return server.start().url

    yield start
    for server in servers:
        server.kill()


def test_doctor_checks_redis_reachability_and_persistence(tmp_path: Path, redis_factory: Callable[..., str]) -> None:
    volatile = redis_factory(appendonly=False)
    durable = redis_factory(appendonly=True)
    _, report = doctor(tmp_path / "state", config={"redis_url": volatile})
    assert by_name(report)["redis"]["status"] == "warn" and "no persistence" in by_name(report)["redis"]["message"]
    _, report = doctor(tmp_path / "state", config={"redis_url": durable})
    assert by_name(report)["redis"]["status"] == "ok" and "AOF on" in by_name(report)["redis"]["message"]
    _, report = doctor(tmp_path / "state", config={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    assert by_name(report)["redis"]["status"] == "error" and "cannot reach" in by_name(report)["redis"]["message"]
